"""Helpers shared by the torch-operator tests (imported by name: pytest puts this folder on sys.path)."""
import torch


def compiled_fullgraph(f, *args):
    """torch.compile(f, fullgraph=True) (aot_eager backend) after checking that dynamo traces f on
    args as one graph without breaks and that the compiled f returns f's value on args exactly."""
    e = torch._dynamo.explain(f)(*args)
    assert e.graph_break_count == 0 and e.graph_count == 1, e.break_reasons
    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert float(cf(*args)) == float(f(*args))
    return cf
