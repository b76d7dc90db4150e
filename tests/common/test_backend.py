"""The one array layer (python/numkern/_backend) and the one native array view
(csrc/python/common/array_view.hpp, read through numkern._core._view_info)."""
import numpy as np
import pytest

from numkern import _backend as B
from numkern import _core


class FakeCuda:
    """An object exposing __cuda_array_interface__ (v3) with a fake device pointer: the view reader
    only reads the dict, never the memory, so this runs without a GPU."""

    def __init__(self, shape, typestr="<f8", strides=None, readonly=False, ptr=4096):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly),
                                         "strides": strides, "version": 3}


FakeCuda.__module__ = "cupy.fake"  # array_kind() treats it as a CuPy array


def test_result_dtype_rule():
    f32, f64 = np.float32, np.float64
    assert B.result_dtype(np.ones(2, f32), 2.0) == f32          # Python scalars are weak
    assert B.result_dtype(np.ones(2, f32), np.float64(2.0)) == f64  # numpy scalars are not
    assert B.result_dtype(np.ones(2, np.float16)) == f32
    assert B.result_dtype(np.ones(2, np.int8), np.ones(2, f32)) == f64  # integers compute in float64
    assert B.result_dtype(np.ones(2, bool)) == f64
    assert B.result_dtype(1.0, 2) == f64
    with pytest.raises(TypeError, match="x: unsupported dtype"):
        B.result_dtype(np.array(["a"]), names=("x",))
    with pytest.raises(TypeError, match="v: cannot convert"):
        B.result_dtype([[1.0], [1.0, 2.0]], names=("v",))


def test_result_dtype_torch(torch):
    assert B.result_dtype(torch.ones(2, dtype=torch.float32), 1.0) == np.float32
    assert B.result_dtype(torch.ones(2, dtype=torch.bfloat16)) == np.float32
    assert B.result_dtype(torch.ones(2, dtype=torch.int32)) == np.float64
    with pytest.raises(TypeError, match="z: unsupported dtype"):
        B.result_dtype(torch.ones(2, dtype=torch.complex64), names=("z",))


def test_context_refuses_mixtures(torch):
    with pytest.raises(ValueError, match="cannot mix torch tensors and CuPy"):
        B.Context(torch.ones(2), FakeCuda((2,)))
    ctx = B.Context(torch.ones(2), np.ones(2))  # numpy joins torch CPU tensors
    assert ctx.kind == B.TORCH and not ctx.cuda and ctx.stream() == 0


def test_context_output_kinds(torch):
    ctx = B.Context(torch.ones(3, dtype=torch.float64))
    a = ctx.input(torch.arange(3.0), np.float64, "x")
    assert isinstance(a, np.ndarray)  # torch CPU computes on zero-copy numpy views
    out = ctx.output(a * 2)
    assert isinstance(out, torch.Tensor) and out.tolist() == [0.0, 2.0, 4.0]
    assert B.Context(np.ones(2)).output(np.array(3.0)) == 3.0  # 0-d numpy becomes a scalar


def test_out_only_cupy_gives_named_error():
    # Regression: out= as the only CuPy argument raised a bare StopIteration.
    from numkern import special

    with pytest.raises(TypeError, match="out: a CuPy out= needs CuPy inputs"):
        special.log_iv(np.ones(2), np.ones(2), out=FakeCuda((2,)))


def test_view_numpy():
    a = np.arange(12.0).reshape(3, 4)[:, ::2]
    info = _core._view_info(a, "a")
    assert info["dtype"] == "float64" and info["shape"] == (3, 2) and info["strides"] == (4, 2)
    assert not info["cuda"] and info["writable"] and not info["c_contiguous"]
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    assert _core._view_info(ro, "r")["writable"] is False
    assert _core._view_info(np.ones((2, 3), np.uint8), "u")["c_contiguous"]


def test_view_cuda_interface():
    info = _core._view_info(FakeCuda((5, 3), "<f4"), "x")
    assert info["cuda"] and info["dtype"] == "float32" and info["shape"] == (5, 3)
    assert info["strides"] == (3, 1) and info["c_contiguous"] and info["data"] == 4096
    info = _core._view_info(FakeCuda((5, 3), "<f8", strides=(8, 40), readonly=True), "x")
    assert info["strides"] == (1, 5) and not info["writable"] and not info["c_contiguous"]


@pytest.mark.parametrize("obj, match", [
    (None, "w: expected an array, got None"),
    ([1.0, 2.0], "w: expected a numpy array or a CUDA array, got list"),
    (FakeCuda((2,), "<c16"), "w: unsupported dtype"),
    (FakeCuda((2,), "<f8", strides=(12,)), "w: stride is not a multiple"),
    (FakeCuda((2,), "<f8", ptr=0), "w: null device pointer"),
])
def test_view_errors_name_the_argument(obj, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _core._view_info(obj, "w")


def test_view_rejects_misaligned_and_big_endian():
    buf = np.zeros(17, np.uint8)
    mis = buf[1:].view(np.float64)
    with pytest.raises(ValueError, match="m: data are not aligned"):
        _core._view_info(mis, "m")
    with pytest.raises(TypeError, match="b: big-endian"):
        _core._view_info(np.ones(2, ">f8"), "b")
