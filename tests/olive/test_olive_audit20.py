"""Audit of the OVP C++ side as a user sees it (twentieth session): the encoder's bytes across
thread counts and tiers against the scalar reference search on adversarial weights, every
matmul path against x @ dequantize(W).T + b in float64 (documented bound 1e-5 relative to
|x| @ |W|.T + |b|, IEEE results for non-finite x), the integer kernels of activation-quantized
layers against the exact product of the quantized operands, and corrupt packs (check_packed)."""
import dataclasses
import itertools
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numkern
import numkern._core as core
from numkern._core import olive as C
from numkern.quant import olive as O

TIERS = [t for t in ("portable", "avx2", "avx512") if core.isa_supported(t)]
AMX = [True, False] if core.amx_available() else [False]
NORMAL = {"int": 0, "flint": 1}


@pytest.fixture(autouse=True)
def _restore():
    isa, threads, amx = core.isa(), numkern.get_num_threads(), core.amx_allowed()
    yield
    core.set_isa(isa)
    numkern.set_num_threads(threads)
    core.set_amx(amx)


# ---- encoder -----------------------------------------------------------------------------------
def _encode(fn, x, bits, normal, keep_left, per_row, mode):
    rows, cols = x.shape
    groups = rows if per_row else 1
    codes = np.empty((rows, (cols + 1) // 2 * (1 if bits == 4 else 2)), np.uint8)
    scales, alphas, errors = np.empty(groups, np.float32), np.zeros(groups), np.empty(groups)
    fn(x, codes, scales, alphas, errors, bits, normal, keep_left, per_row, mode)
    return codes, scales, alphas, errors


def _adversarial(cols, rows=2, seed=0):
    rng = np.random.default_rng(seed + cols)
    sign = np.where(rng.standard_normal((rows, cols)) < 0, -1.0, 1.0)
    single = np.zeros((rows, cols), np.float32)
    single[:, cols // 2] = 2.5
    alt = np.ones((rows, cols), np.float32)
    alt[:, 1::2] = -1
    mixed = rng.standard_normal((rows, cols)).astype(np.float32)
    mixed[0, 0], mixed[-1, -1] = 1e-45, 3e36
    spikes = rng.standard_normal((rows, cols)).astype(np.float32)
    spikes[:, ::7] *= 1000
    return {
        "equal": np.full((rows, cols), 0.37, np.float32),
        "zeros": np.zeros((rows, cols), np.float32),
        "single": single,
        "subnormal": (rng.standard_normal((rows, cols)) * 1e-40).astype(np.float32),
        "min_subnormal": (sign * 1e-45).astype(np.float32),
        "near_1e37": (rng.uniform(0.5, 1.0, (rows, cols)) * 1e37 * sign).astype(np.float32),
        "all_1e37": np.full((rows, cols), 1e37, np.float32),
        "alternating": alt,
        "cauchy_like": rng.standard_t(1.5, (rows, cols)).astype(np.float32),
        "spikes": spikes,
        "mixed": mixed,
    }


@pytest.mark.parametrize("cols", [1, 2, 3, 31, 33, 1000])
def test_encoder_bytes_equal_reference_every_tier_and_thread_count(cols):
    for name, x in _adversarial(cols).items():
        for bits, normal, keep_left, per_row, mode in itertools.product((4, 8), (0, 1), (False, True),
                                                                        (True, False), (0, 1)):
            if bits == 8 and normal == 1:
                continue
            core.set_isa(TIERS[-1])
            ref = _encode(C.encode_reference, x, bits, normal, keep_left, per_row, mode)
            for tier, threads in itertools.product(TIERS, (1, 2)):
                core.set_isa(tier)
                numkern.set_num_threads(threads)
                got = _encode(C.encode, x, bits, normal, keep_left, per_row, mode)
                for g, r, what in zip(got, ref, ("codes", "scales", "alphas", "errors")):
                    assert np.array_equal(g.view(np.uint8), r.view(np.uint8)), (
                        name, cols, bits, normal, keep_left, per_row, mode, tier, threads, what)


def test_encoder_bytes_equal_reference_across_chunks_and_threads():
    """Rows past the 4096-column chunk, many rows (row-parallel) and per tensor (candidate-parallel),
    pairs of equal magnitude (both outliers, `larger` keeps the left one)."""
    rng = np.random.default_rng(11)
    for shape, df in (((37, 4097), 2.0), ((5, 8193), 3.0), ((200, 33), 2.5)):
        x = rng.standard_t(df, shape).astype(np.float32)
        m = shape[1] // 2
        x[::2, 0:2 * m:2] = -x[::2, 1:2 * m:2]
        for bits, normal, keep_left, per_row in itertools.product((4, 8), (0, 1), (False, True), (True, False)):
            if bits == 8 and normal == 1:
                continue
            ref = _encode(C.encode_reference, x, bits, normal, keep_left, per_row, 0)
            for tier, threads in itertools.product(TIERS, (1, 2)):
                core.set_isa(tier)
                numkern.set_num_threads(threads)
                got = _encode(C.encode, x, bits, normal, keep_left, per_row, 0)
                for g, r in zip(got, ref):
                    assert np.array_equal(g.view(np.uint8), r.view(np.uint8)), (shape, bits, normal, keep_left,
                                                                                 per_row, tier, threads)


def test_ovp_quantize_same_codes_on_every_tier_and_thread_count():
    rng = np.random.default_rng(12)
    w = (rng.standard_t(2.5, (19, 45)) * 0.1).astype(np.float32)
    for bits, normal, axis, both in itertools.product((4, 8), ("auto", "int", "flint"), ("row", None),
                                                      ("larger", "left")):
        if bits == 8 and normal == "flint":
            continue
        core.set_isa(TIERS[0])
        numkern.set_num_threads(1)
        ref = O.ovp_quantize(w, bits=bits, normal=normal, axis=axis, both_outliers=both)
        for tier, threads in itertools.product(TIERS, (1, 2)):
            core.set_isa(tier)
            numkern.set_num_threads(threads)
            q = O.ovp_quantize(w, bits=bits, normal=normal, axis=axis, both_outliers=both)
            assert q.normal == ref.normal
            assert np.array_equal(q.codes, ref.codes) and np.array_equal(q.scales, ref.scales)
            assert np.array_equal(q.alphas, ref.alphas)


# ---- float-activation kernels ------------------------------------------------------------------
def _check_product(got, x, deq, b, tag):
    """|got - (x @ deq.T + b)| <= 1e-5 (|x| @ |deq|.T + |b|) where that is finite; elsewhere the
    same non-finite value (NaN where the float64 product is NaN, the same infinity)."""
    x64 = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = x64 @ deq.T + b
        bound = 1e-5 * (np.abs(x64) @ np.abs(deq).T + np.abs(b)) + 1e-30
    got = np.asarray(got, np.float64)
    fin = np.isfinite(ref)
    assert np.all(np.abs(got[fin] - ref[fin]) <= bound[fin]), (tag, float(np.max(np.abs(got - ref)[fin] / bound[fin])))
    assert np.array_equal(got[~fin], ref[~fin], equal_nan=True), tag


def _x_variants(rng, batch, k, deq):
    x = rng.standard_normal((batch, k)).astype(np.float32)
    out = [("finite", x)]
    xn = x.copy()
    xn[0, rng.integers(k)] = np.inf
    if batch > 1:
        xn[-1, rng.integers(k)] = np.nan
        xn[batch // 2, :] = -np.inf
    out.append(("nonfinite", xn))
    xi = x.copy()
    xi[:, np.unravel_index(np.argmax(np.abs(deq)), deq.shape)[1]] = np.inf  # meets the largest weight (an outlier)
    out.append(("inf_at_outlier", xi))
    return out


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("n,k", [(1, 1), (5, 3), (33, 7), (70, 15), (40, 17), (33, 257), (35, 1025)])
def test_every_matmul_path_within_bound(bits, n, k):
    rng = np.random.default_rng(100 * n + k + bits)
    w = (rng.standard_t(2.5, (n, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for axis in ("row", None):
        q = O.ovp_quantize(w, bits=bits, normal="auto" if bits == 4 else "int", axis=axis)
        per_row, nm = axis == "row", NORMAL[q.normal]
        deq = np.asarray(O.ovp_dequantize(q), np.float64)
        layouts = ["rows", "panels"] + (["panels4"] if bits == 4 else [])
        packs = {lay: C.prepack(q.codes, q.scales, per_row, k, bits, nm, lay) for lay in layouts}
        for batch in (1, 2, 3, 5, 9, 10, 16, 31, 32, 33, 257, 300) if per_row else (1, 5, 12, 40, 260):
            for (name, x), tier, amx in itertools.product(_x_variants(rng, batch, k, deq), TIERS, AMX):
                core.set_isa(tier)
                core.set_amx(amx)
                tag = (bits, n, k, axis, batch, name, tier, amx)
                out = np.empty((batch, n), np.float32)
                C.matmul(x, q.codes, q.scales, out, per_row, bits, nm)
                _check_product(out, x, deq, np.zeros(n), tag + ("fused",))
                for lay, pk in packs.items():
                    out = np.empty((batch, n), np.float32)
                    C.matmul_packed(x, pk, q.scales, out, per_row, b)
                    _check_product(out, x, deq, b.astype(np.float64), tag + (lay,))


def test_ovp_matmul_noncontiguous_and_transposed_x():
    torch = pytest.importorskip("torch")
    import numkern.quant as Q

    rng = np.random.default_rng(21)
    n, k = 45, 67
    w = (rng.standard_t(2.5, (n, k)) * 0.1).astype(np.float32)
    for bits, batch in itertools.product((4, 8), (1, 3, 12, 40)):
        q, qt = O.ovp_quantize(w, bits=bits), O.ovp_quantize(torch.from_numpy(w), bits=bits)
        deq = np.asarray(O.ovp_dequantize(q), np.float64)
        xt = rng.standard_normal((k, batch)).astype(np.float32)
        xs = rng.standard_normal((batch, 2 * k)).astype(np.float32)[:, ::2]
        zero = np.zeros(n)
        _check_product(O.ovp_matmul(xt.T, q), xt.T, deq, zero, "numpy transposed")
        _check_product(O.ovp_matmul(xs, q), xs, deq, zero, "numpy strided")
        _check_product(O.ovp_matmul(torch.from_numpy(xt).T, qt).numpy(), xt.T, deq, zero, "torch transposed")
        _check_product(O.ovp_matmul(torch.from_numpy(xt).T._neg_view(), qt).numpy(), -xt.T, deq, zero, "torch neg")
        lin = torch.nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
        layer = Q.OVPLinear.from_linear(lin, bits=bits)
        dq, bias = layer.dequantized_weight().double().numpy(), lin.bias.detach().double().numpy()
        with torch.no_grad():
            _check_product(layer(torch.from_numpy(xt).T).numpy(), xt.T, dq, bias, "layer transposed")
            x3 = torch.from_numpy(rng.standard_normal((2, k, batch)).astype(np.float32)).transpose(1, 2)
            _check_product(layer(x3).reshape(-1, n).numpy(), x3.reshape(-1, k).numpy(), dq, bias, "layer 3-d")


# ---- activation-quantized layers ---------------------------------------------------------------
def _grid(q):
    """Grid values (q units) of an OVPTensor: dequantized with unit scales (exact)."""
    q1 = dataclasses.replace(q, codes=np.asarray(q.codes), scales=np.ones_like(np.asarray(q.scales)))
    return np.asarray(O.ovp_dequantize(q1), np.float64)


def _exact_act_product(layer, x):
    """The exact product of the quantized operands, from integer sums: every grid value is a
    multiple of 1/4, so 16 g_a g_w sums exactly in int64; times s_a s_r (exact in float64) the
    result carries one float64 rounding."""
    qa = O.ovp_quantize(x, bits=layer.act_bits, normal=layer.act_normal, axis=None, alpha=float(layer.act_alpha),
                        both_outliers=layer.both_outliers)
    qw = layer.quantized_weight()
    ga, gw = _grid(qa) * 4, _grid(qw) * 4
    assert np.array_equal(ga, np.round(ga)) and np.array_equal(gw, np.round(gw))
    s = ga.astype(np.int64) @ gw.astype(np.int64).T
    sa, sw = float(np.asarray(qa.scales)[0]), np.asarray(qw.scales, np.float64)
    return s.astype(np.float64) / 16 * (sa * sw)[None, :]


@pytest.mark.parametrize("bits", [4, 8])
def test_act_layers_exact_product_bound_every_path(bits):
    torch = pytest.importorskip("torch")
    import numkern.quant as Q

    rng = np.random.default_rng(30 + bits)
    for n, k in ((3, 1), (7, 3), (33, 17), (40, 255), (33, 257)):
        torch.manual_seed(n * k + bits)
        lin = torch.nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.mul_(torch.from_numpy(rng.standard_t(2.5, (n, k)).astype(np.float32)))
        layer = Q.OVPLinear.from_linear(lin, bits=bits, act_bits=8)
        Q.calibrate(layer, [torch.from_numpy(rng.standard_t(3, (16, k)).astype(np.float32)) for _ in range(3)])
        bias = lin.bias.detach().double().numpy()
        for batch in (1, 2, 9, 15, 16, 17, 33, 257):
            x = torch.from_numpy((rng.standard_t(3, (batch, k)) * 1.3).astype(np.float32))
            exact = _exact_act_product(layer, x.numpy())
            # one float32 rounding of the product (2^-24 + 2^-52), then the float32 bias add
            tol = (2**-24 + 2**-52) * np.abs(exact) + 2**-24 * (np.abs(exact) + np.abs(bias)) * (1 + 2**-20) + 1e-38
            for tier, amx in itertools.product(TIERS, AMX):
                core.set_isa(tier)
                core.set_amx(amx)
                with torch.no_grad():
                    y = layer(x).double().numpy()
                err = np.abs(y - (exact + bias))
                assert np.all(err <= tol), (bits, n, k, batch, tier, amx, float(np.max(err / tol)))
                out = np.empty((batch, n), np.float32)
                pk = C.prepack(np.asarray(layer.codes), np.asarray(layer.scales), True, k, bits, NORMAL[layer.normal])
                assert C.matmul_int8act(x.numpy(), pk, np.asarray(layer.scales), out, True, float(layer.act_alpha),
                                        8, NORMAL[layer.act_normal], layer.both_outliers == "left")
                assert np.all(np.abs(out - exact) <= (2**-24 + 2**-52) * np.abs(exact) + 1e-38), (bits, n, k, batch)


def test_act_layer_non_finite_or_huge_x_documented_fallback():
    """Non-finite x raises ovp_quantize's ValueError (count named), |x| > 1e37 likewise; the
    kernel itself declines and leaves its output untouched, on every path."""
    torch = pytest.importorskip("torch")
    import numkern.quant as Q

    torch.manual_seed(0)
    for bits in (4, 8):
        layer = Q.OVPLinear.from_linear(torch.nn.Linear(33, 40), bits=bits, act_bits=8)
        Q.calibrate(layer, [torch.randn(8, 33)])
        pk = C.prepack(np.asarray(layer.codes), np.asarray(layer.scales), True, 33, bits, NORMAL[layer.normal])
        for batch, val in itertools.product((1, 5, 16, 40), (np.nan, np.inf, -np.inf, 2e37)):
            x = torch.randn(batch, 33)
            x[-1, -1] = float(val)
            with torch.no_grad(), pytest.raises(ValueError, match="NaN or infinite|> 1e"):
                layer(x)
            for tier, amx in itertools.product(TIERS, AMX):
                core.set_isa(tier)
                core.set_amx(amx)
                out = np.full((batch, 40), 123.0, np.float32)
                xx = x.numpy()
                assert not C.matmul_int8act(xx, pk, np.asarray(layer.scales), out, True, float(layer.act_alpha), 8,
                                            NORMAL[layer.act_normal], False)
                assert np.all(out == 123.0)
                assert C.linear_int8act(xx, pk, np.asarray(layer.scales), True, float(layer.act_alpha), 8,
                                        NORMAL[layer.act_normal], False) is None


# ---- corrupt packs -----------------------------------------------------------------------------
def _a64(b):
    return (b + 63) // 64 * 64


def _blob(n, k, n_out, bits=4, normal=0, layout=0, unit=None):
    """A zero pack with the given header, sized as its header says."""
    padded = (n + 31) // 32 * 32
    nb = n * k if layout == 0 else (padded * k if layout == 1 else padded // 2 * ((k + 7) // 8 * 8))
    end = 64 + _a64(nb) + _a64(8 * (n + 1)) + 2 * _a64(4 * n_out)
    b = np.zeros(end, np.uint8)
    unit = (0.25 if bits == 8 else (2.0 if normal == 1 else 4.0)) if unit is None else unit
    b[:64] = np.frombuffer(struct.pack("<qqqqqqfiq", 0x314B50564F4B4E, n, k, n_out, bits, normal, unit, 0, layout),
                           np.uint8)
    return b


# attempt(call): prints "ran", or "refused: <message>" for the ValueError a corrupt pack must raise
_ATTEMPT = textwrap.dedent("""
    def attempt(call):
        try:
            call()
            print("ran")
        except ValueError as e:
            print("refused:", e)
    """)


def _in_subprocess(code):
    """Run code (numkern imported as here) in a fresh interpreter: a corrupt pack that crashed the
    process fails the test instead of the test run."""
    r = subprocess.run([sys.executable, "-c", _ATTEMPT + textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r.stdout


def test_pack_header_whose_section_sizes_wrap_is_refused():
    """n = 2^40, k = 2^22 and an n_outliers whose 4 n_outliers wraps: the sizes summed to 256 bytes,
    the header passed, and the matmul read row pointers 2^62 bytes away (segfault)."""
    out = _in_subprocess("""
        import struct, numpy as np
        from numkern._core import olive as C
        n, k = 1 << 40, 1 << 22
        n_out = (1 << 62) - ((1 << 59) + (1 << 40) - 16)
        b = np.zeros(256, np.uint8)
        b[:64] = np.frombuffer(struct.pack("<qqqqqqfiq", 0x314B50564F4B4E, n, k, n_out, 4, 0, 4.0, 0, 0), np.uint8)
        x, o, s = np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32), np.ones(1, np.float32)
        for call in (lambda: C.matmul_packed(x, b, s, o, False), lambda: C.linear_packed(x, b, s, False)):
            attempt(call)
        """)
    assert out.count("refused: packed: bad dimensions in the header") == 2, out


def test_pack_with_k_zero_is_refused():
    """k = 0 in the header: from 32 batch rows (16 in the integer kernel) a division by k (SIGFPE)."""
    out = _in_subprocess(f"""
        import numpy as np, struct
        from numkern._core import olive as C
        def blob(n, k, layout):
            {_blob_src()}
        for layout in (0, 1, 2):
            b = blob(1, 0, layout)
            x, s = np.ones((40, 0), np.float32), np.ones(1, np.float32)
            attempt(lambda: C.matmul_packed(x, b, s, np.zeros((40, 1), np.float32), True))
        attempt(lambda: C.linear_int8act(np.ones((20, 0), np.float32), blob(1, 0, 0), np.ones(1, np.float32), True,
                                         1.0, 8, 0, False))
        """)
    assert out.count("refused: packed: bad dimensions in the header") == 4, out


def _blob_src():
    return ("a64 = lambda v: (v + 63) // 64 * 64; p = (n + 31) // 32 * 32; "
            "nb = n * k if layout == 0 else (p * k if layout == 1 else p // 2 * ((k + 7) // 8 * 8)); "
            "b = np.zeros(64 + a64(nb) + a64(8 * (n + 1)), np.uint8); "
            "b[:64] = np.frombuffer(struct.pack('<qqqqqqfiq', 0x314B50564F4B4E, n, k, 0, 4, 0, 4.0, 0, layout), np.uint8); "
            "return b")


def test_pack_with_outlier_columns_out_of_order_is_refused():
    """A row's outliers listed out of column order: the buffered panel loop (32+ batch rows, no AMX)
    folded them at negative offsets of its buffer (a write outside it) and dropped them from the
    sum; the pack is now refused on every entry point."""
    out = _in_subprocess("""
        import struct, numpy as np
        import numkern._core as core
        from numkern._core import olive as C
        from numkern.quant import olive as O
        a64 = lambda v: (v + 63) // 64 * 64
        n, k = 32, 600
        w = np.full((n, k), 0.01, np.float32)
        w[:, 5], w[:, 300], w[:, 500] = 10, -10, 7
        q = O.ovp_quantize(w, bits=8, normal="int", alpha=0.5)
        core.set_amx(False)
        for layout in ("panels", "rows"):
            pk = np.array(C.prepack(q.codes, q.scales, True, k, 8, 0, layout))
            n_out = struct.unpack("<qqqq", pk[:32].tobytes())[3]
            rp = 64 + a64(n * k)
            cs = rp + a64(8 * (n + 1))
            vs = cs + a64(4 * n_out)
            row_ptr = pk[rp:rp + 8 * (n + 1)].view(np.int64)
            cols, vals = pk[cs:cs + 4 * n_out].view(np.int32), pk[vs:vs + 4 * n_out].view(np.float32)
            first = slice(int(row_ptr[0]), int(row_ptr[1]))
            assert first.stop - first.start == 3, (layout, row_ptr[:3])
            cols[first], vals[first] = cols[first][::-1].copy(), vals[first][::-1].copy()
            x = np.ones((40, k), np.float32)
            for call in (lambda: C.matmul_packed(x, pk, q.scales, np.empty((40, n), np.float32), True),
                         lambda: C.linear_packed(x, pk, q.scales, True),
                         lambda: C.linear_int8act(x, pk, q.scales, True, 1.0, 8, 0, False)):
                attempt(call)
        """)
    assert out.count("refused: packed: outlier columns not ascending within a row") == 6, out


def test_pack_header_with_invalid_normal_is_refused():
    """The header's grid (normal) must be int or flint, int at 8 bits (was accepted as int)."""
    x, s = np.ones((2, 8), np.float32), np.ones(3, np.float32)
    for bits, normal in ((4, 5), (4, -1), (8, 1), (8, 7)):
        b = _blob(3, 8, 0, bits=bits, normal=normal, unit=0.25 if bits == 8 else 4.0)
        with pytest.raises(ValueError, match="packed: bad format in the header"):
            C.matmul_packed(x, b, s, np.empty((2, 3), np.float32), True)


def test_corrupt_packs_raise_not_crash():
    """Truncated / extended blobs, a bad magic, row pointers out of order or not ending at the
    outlier count, out-of-range (negative or >= k) outlier columns: ValueError on every entry point,
    the output untouched."""
    rng = np.random.default_rng(50)
    w = (rng.standard_t(2.0, (33, 70)) * 0.1).astype(np.float32)
    q = O.ovp_quantize(w, bits=4, normal="int", search=False)
    good = np.array(C.prepack(q.codes, q.scales, True, 70, 4, 0, "panels"))
    n_out = struct.unpack("<qqqq", good[:32].tobytes())[3]
    assert n_out >= 2
    rp = 64 + _a64(64 * 70)  # two panels of 32 rows
    cs = rp + _a64(8 * 34)
    bad = {"truncated": good[:-1].copy(), "extended": np.concatenate([good, np.zeros(64, np.uint8)]),
           "short": good[:40].copy()}
    b = good.copy()
    b[0] ^= 1
    bad["magic"] = b
    b = good.copy()
    b[rp + 8:rp + 16] = np.frombuffer(np.int64(n_out + 1).tobytes(), np.uint8)
    bad["row_ptr order"] = b
    b = good.copy()
    b[rp + 8 * 33:rp + 8 * 34] = np.frombuffer(np.int64(n_out - 1).tobytes(), np.uint8)
    bad["row_ptr end"] = b
    for name, col in (("column k", 70), ("column negative", -1)):
        b = good.copy()
        b[cs:cs + 4] = np.frombuffer(np.int32(col).tobytes(), np.uint8)
        bad[name] = b
    x = np.ones((40, 70), np.float32)
    for name, b in bad.items():
        out = np.full((40, 33), 7.0, np.float32)
        with pytest.raises(ValueError, match="packed"):
            C.matmul_packed(x, b, q.scales, out, True)
        assert np.all(out == 7.0), name
        with pytest.raises(ValueError, match="packed"):
            C.linear_packed(x, b, q.scales, True)
        with pytest.raises(ValueError, match="packed"):
            C.matmul_int8act(x, b, q.scales, out, True, 1.0, 8, 0, False)
        assert np.all(out == 7.0), name
