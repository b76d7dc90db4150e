# The one place the version is written: pyproject.toml reads it ([tool.scikit-build.metadata.version],
# a regex), numkern.__version__ imports it.
__version__ = "0.1.0"
