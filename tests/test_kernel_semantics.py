"""NaN / Inf / denormal semantics of every kernel on every ISA (issue 12).

In the spirit of ggml's test-backend-ops: every fast kernel family reachable
through ``mobilevit.ops`` (GEMM as linear and conv1x1; dense convs direct --
strided, dilated, two-input -- and by Winograd; depthwise; LayerNorm;
GroupNorm(1); multi-head and patch attention; separable attention; SiLU /
ReLU) and the fused inverted-residual block (through a three-node graph) runs
on each fast ISA this CPU has and is compared with its scalar reference
("ref") on inputs salted with NaN, +Inf, -Inf, denormals (+-1e-40), values
near the top of the float range (+-3e38) and ordinary N(0, 1) values, over
channel counts that straddle the SIMD widths (4 / 8 / 16 lanes, 32-column
panels), odd H/W, batch 1 and 2.  Asserted for every output (``check``):

* the same NaN mask, the same +Inf positions and the same -Inf positions;
* finite values within the family's tolerance (table below);
* 1 and 2 threads give identical bits.

Element-wise ops (relu, silu, add) and the reference-only ops (batch_norm,
concat, unfold/fold, crop_pad, interpolate_bilinear, global_avg_pool) are
compared with PyTorch directly, as are the references of the fast families
on non-finite inputs.  A last test checks that nothing flushes denormals
(FTZ/DAZ) on any path or thread.

Input rules (written down because each one keeps a check exact, not loose):

* Weights are finite with |w| < 1 (Winograd: |w| < 0.4, so that G g G^T
  stays below 1): no single product x*w overflows, so the fast kernels'
  fused multiply-adds and the reference's separate multiply and add overflow
  at the same partial sums (they could differ only within one rounding of
  FLT_MAX).  Non-finite weights are not covered (checkpoints are finite).
* Where the fast kernel sums in a different order than the reference (the
  lanes of LayerNorm's row sums, the softmax sums, attention's P.V before the
  1/sum) a reduction gets at most one +-3e38 value: two huge values of one
  sign overflow or not depending on the order -- rounding, not semantics.
  GroupNorm gets them densely (its statistics are in double on every path),
  as do the GEMM / conv / depthwise families (same k order everywhere).
* Not followed: LayerNorm of a finite row whose variance overflows float
  (torch: NaN from its Welford update; here rstd = 0, the output is beta).
  That is float overflow, not a NaN/Inf rule; every ISA agrees with ref.
* Attention's V gets NaN / Inf / denormals but no +-3e38 (the fast kernels
  scale by 1/sum after the P.V sum, the reference before).

Tolerances for finite outputs, |y - ref| <= rtol * scale + atol, where
scale is the sum of the magnitudes of the terms (float64, |x| (*) |w| + |b|
+ |residual|: cancellation is measured against what was summed, as ggml's
normalised error), |ref| for element-wise ops, and for normalisations and
attention the size of the normalised values (max(1, |ref|)):

  relu                      exact (bits, signs of zeros included)
  silu                      rtol 4e-6 of |ref|, atol 1e-36 (exp saturation
                            within one rounding of ln(FLT_MAX))
  gemm / conv / depthwise   rtol 2e-6 of scale (Winograd: of the magnitude of
                            its 4x4 input tile, see wino_scale)
  layer_norm / group_norm1  rtol 2e-5 of max(1, |ref|)
  attention / separable     rtol 2e-5 of max(1, |ref|)
  fused inverted residual   rtol 1e-5 of max(1, |ref|) (three layers)
  batch_norm / gap vs torch rtol 1e-6; bilinear vs torch 1e-5 (as test_ops.py)

The sweep here is representative (< 30 s on 2 busy cores); ``-m slow`` runs
the full product of channel counts and spatial sizes.

Without torch (the emulated aarch64 check, .ci/arm64.sh: Debian has no small
arm64 torch) every fast-vs-ref comparison still runs, the tolerance scales
coming from a float64 numpy convolution (conv_f64); the comparisons with
torch itself are skipped there (needs_torch) and covered by PyTorch outputs
recorded on the host (.ci/arm64/test_arm64.py).
"""
import numpy as np
import pytest

try:
    import torch
    F = torch.nn.functional
except ImportError:
    torch = F = None

import mobilevit  # noqa: E402
from mobilevit import _C, ops  # noqa: E402
from mobilevit.model import ACT_SILU, _GraphBuilder  # noqa: E402

FAST = [i for i in mobilevit.available_isas() if i != "ref"]
CH = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33]   # 4 / 8 / 16 lanes, 32-column panels
F32 = np.float32
NAN, INF = float("nan"), float("inf")
NONFINITE = [NAN, INF, -INF]
DENORMAL = [1e-40, -1e-40]
HUGE = [3e38, -3e38]
SPECIAL = NONFINITE + DENORMAL + HUGE
# hand-picked edge points for the element-wise ops: silu's exp under/overflow
# boundaries, signed zeros, the float range
EDGES = [NAN, INF, -INF, 0.0, -0.0, 1e-40, -1e-40, 1.2e-38, -1.2e-38, 3e38, -3e38, 3.4028235e38,
         -3.4028235e38, -100.0, -88.9, -88.8, -88.0, -87.4, -87.3, -86.9, -20.0, -1.0, 1.0, 20.0, 86.9,
         87.4, 88.0, 88.8, 89.0, 100.0]

pytestmark = pytest.mark.skipif(not FAST, reason="no SIMD path on this CPU")
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed (fast-vs-ref checks run without it)")


@pytest.fixture(params=FAST)
def fast(request):
    return request.param


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def salt(rng, x, values, count):
    """x with `count` random positions set to values drawn from `values`."""
    x = np.array(x, F32, copy=True)
    flat = x.reshape(-1)
    count = min(count, flat.size)
    idx = rng.choice(flat.size, count, replace=False)
    flat[idx] = rng.choice(np.array(values, F32), count)
    return x


def salt_rows(rng, x, values, per_row):
    """Each row of the last axis gets at most `per_row` specials."""
    x = np.array(x, F32, copy=True)
    rows = x.reshape(-1, x.shape[-1])
    for r in rows:
        k = rng.integers(0, per_row + 1)
        if k:
            r[rng.choice(r.size, min(k, r.size), replace=False)] = rng.choice(np.array(values, F32), min(k, r.size))
    return x


def weights(rng, shape, bound=1.0):
    return rng.uniform(-bound, bound, shape).astype(F32)


def conv_f64(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv2d in float64 numpy (for the tolerance scales: sums of magnitudes)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    B, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    G, og = groups, O // groups
    OH = (H + 2 * padding - dilation * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * padding - dilation * (KW - 1) - 1) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))).reshape(B, G, Cg, H + 2 * padding, -1)
    wg = w.reshape(G, og, Cg, KH, KW)
    y = np.zeros((B, G, og, OH, OW))
    for ky in range(KH):
        for kx in range(KW):
            y0, x0 = ky * dilation, kx * dilation
            patch = xp[:, :, :, y0:y0 + stride * (OH - 1) + 1:stride, x0:x0 + stride * (OW - 1) + 1:stride]
            y += np.einsum("bgchw,goc->bgohw", patch, wg[:, :, :, ky, kx])
    y = y.reshape(B, O, OH, OW)
    return y if b is None else y + np.asarray(b, np.float64)[None, :, None, None]


def finite_abs(x):
    a = np.abs(np.asarray(x, np.float64))
    a[~np.isfinite(a)] = 0.0
    return a


def masks_equal(y, ref, what):
    for name, f in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        a, b = f(y), f(ref)
        if not np.array_equal(a, b):
            bad = np.argwhere(a != b)
            i = tuple(bad[0])
            raise AssertionError(f"{what}: {name} positions differ at {len(bad)} of {y.size} elements; "
                                 f"first {i}: got {y[i]!r}, expected {ref[i]!r}")


def check(y, ref, what, rtol, atol=0.0, scale=None):
    """Same NaN / +Inf / -Inf positions; finite values within rtol * scale + atol."""
    y, ref = np.asarray(y), np.asarray(ref)
    assert y.shape == ref.shape, f"{what}: shape {y.shape} != {ref.shape}"
    masks_equal(y, ref, what)
    fin = np.isfinite(ref)
    s = np.abs(ref.astype(np.float64)) if scale is None else np.broadcast_to(scale, ref.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(y.astype(np.float64) - ref.astype(np.float64))
    allowed = rtol * s + atol
    bad = fin & ~(err <= allowed)
    if bad.any():
        q = np.where(fin, err / np.maximum(allowed, 1e-300), 0.0)
        i = np.unravel_index(np.argmax(q), q.shape)
        raise AssertionError(f"{what}: {bad.sum()} finite values off; worst at {i}: got {y[i]!r}, "
                             f"expected {ref[i]!r}, |diff| {err[i]:.3g} > {allowed[i]:.3g}")


def threads_agree(fn):
    """fn(num_threads) with 1 and 2 threads: identical bits (NaN positions included)."""
    y1, y2 = fn(1), fn(2)
    np.testing.assert_array_equal(y1, y2)
    assert np.array_equal(np.signbit(y1), np.signbit(y2))
    return y1


def both(fn, isa):
    """(fast result, reference result), the fast one checked for thread independence."""
    return threads_agree(lambda n: fn(isa, n)), fn("ref", 1)


def norm_scale(ref):
    return np.maximum(1.0, np.abs(np.asarray(ref, np.float64)))


# ---- element-wise activations -----------------------------------------------------------------

def act_input(rng, n):
    x = rng.standard_normal(n).astype(F32) * 30
    x[: min(n, len(EDGES))] = np.array(EDGES, F32)[: min(n, len(EDGES))]
    rng.shuffle(x)
    return x


@pytest.mark.parametrize("n", CH + [30, 64, 1001])
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_activation_matches_ref_and_torch(fast, rng, act, n):
    x = act_input(rng, n)
    fn = getattr(ops, act)
    y, ref = both(lambda isa, nt: fn(x, isa=isa, num_threads=nt), fast)
    masks_equal(y, ref, f"{act} {fast} vs ref")
    sb = ~np.isnan(ref)
    assert np.array_equal(np.signbit(y[sb]), np.signbit(ref[sb])), f"{act} {fast} vs ref: signs differ"
    if act == "relu":
        np.testing.assert_array_equal(y[sb].view(np.uint32), ref[sb].view(np.uint32))
    else:
        check(y, ref, f"silu {fast} vs ref", 4e-6, 1e-36)
    # denormal inputs come out unflushed: relu(d) = d, silu(d) = d / 2 (exact)
    d = np.abs(x) < 1.17e-38
    np.testing.assert_array_equal(y[d], ref[d])
    if torch is None:
        return
    tr = getattr(F, act)(t(x)).numpy()
    for got, name in ((y, fast), (ref, "ref")):
        what = f"{act} {name} vs torch"
        masks_equal(got, tr, what)
        # the sign of every non-NaN result (zeros included) is torch's
        sb = ~np.isnan(tr)
        assert np.array_equal(np.signbit(got[sb]), np.signbit(tr[sb])), what + ": signs differ"
    if act == "relu":
        sb = ~np.isnan(tr)
        np.testing.assert_array_equal(y[sb].view(np.uint32), tr[sb].view(np.uint32))
        np.testing.assert_array_equal(ref[sb].view(np.uint32), tr[sb].view(np.uint32))
    else:
        check(ref, tr, "silu ref vs torch", 4e-6, 1e-36)


def test_activation_edge_values_exact_list(fast):
    """The headline cases of issue 12, spelled out."""
    x = np.array([NAN, INF, -INF, -0.0, 1e-40, -3e38, -100.0], F32)
    for isa in (fast, "ref"):
        r = ops.relu(x, isa=isa)
        assert np.isnan(r[0]) and r[1] == INF and r[2] == 0 and np.signbit(r[3]) and r[4] == F32(1e-40)
        s = ops.silu(x, isa=isa)
        assert np.isnan(s[0]), f"{isa}: silu(NaN) = {s[0]}"
        assert s[1] == INF, f"{isa}: silu(+inf) = {s[1]}"
        assert np.isnan(s[2]), f"{isa}: silu(-inf) = {s[2]} (torch: nan)"
        assert s[5] == 0 and np.signbit(s[5]) and s[6] == 0 and np.signbit(s[6]), f"{isa}: silu(-3e38, -100) = {s[5:]}"


# ---- GEMM: linear and conv1x1 -----------------------------------------------------------------

# M = 2m rows; on AVX2, GEMMs of up to 256 rows run panel-wide tiles and larger ones the
# narrow tiles (gemm.simd.inc), so rows on both sides of that line
GEMM_CASES = [(1, 1, 1), (13, 3, 8), (7, 7, 9), (6, 16, 17), (13, 33, 31), (97, 9, 32), (12, 32, 33), (25, 17, 65),
              (9, 4, 5), (16, 5, 12), (128, 7, 33), (129, 12, 41), (150, 3, 70)]


@pytest.mark.parametrize("m,k,n", GEMM_CASES)
@pytest.mark.parametrize("act", [None, "silu", "relu"])
def test_linear(fast, rng, m, k, n, act):
    x = salt(rng, rng.standard_normal((2, m, k)), SPECIAL, max(1, 2 * m * k // 40))
    w, b = weights(rng, (n, k)), weights(rng, n)
    r = salt(rng, rng.standard_normal((2, m, n)), SPECIAL, max(1, m * n // 30))
    y, ref = both(lambda isa, nt: ops.linear(x, w, b, act=act, residual=r, isa=isa, num_threads=nt), fast)
    scale = finite_abs(x) @ np.abs(w.T.astype(np.float64)) + np.abs(b) + finite_abs(r)
    check(y, ref, f"linear {m}x{k}x{n} {act} {fast}", 2e-6, scale=scale)


@pytest.mark.parametrize("cin,cout", [(1, 8), (9, 17), (16, 16), (33, 31)])
def test_conv1x1(fast, rng, cin, cout):
    x = salt(rng, rng.standard_normal((2, cin, 5, 7)), SPECIAL, 6)
    w, b = weights(rng, (cout, cin, 1, 1)), weights(rng, cout)
    y, ref = both(lambda isa, nt: ops.conv1x1(x, w, b, act="silu", isa=isa, num_threads=nt), fast)
    scale = conv_f64(finite_abs(x), np.abs(w), np.abs(b))
    check(y, ref, f"conv1x1 {cin}->{cout} {fast}", 2e-6, scale=scale)


# ---- dense convolutions -----------------------------------------------------------------------

def conv_scale(x, w, b, stride, padding, dilation, r=None, x2=None):
    xs = finite_abs(x) if x2 is None else np.concatenate([finite_abs(x), finite_abs(x2)], 1)
    s = conv_f64(xs, np.abs(w), np.abs(b), stride=stride, padding=padding, dilation=dilation)
    return s if r is None else s + finite_abs(r)


CONV_CASES = [  # cin, cout, (h, w), k, stride, pad, dil
    (3, 16, (7, 9), 3, 2, 1, 1),
    (5, 4, (9, 10), 3, 1, 1, 1),
    (7, 9, (5, 5), 3, 1, 1, 1),
    (8, 17, (9, 6), 3, 1, 1, 1),
    (16, 33, (6, 11), 3, 2, 1, 1),
    (17, 32, (13, 7), 3, 1, 2, 2),
    (9, 31, (8, 9), 1, 2, 0, 1),
    (15, 16, (11, 10), 5, 1, 2, 1),
]


@pytest.mark.parametrize("cin,cout,hw,k,stride,pad,dil", CONV_CASES)
@pytest.mark.parametrize("batch", [1, 2])
def test_conv2d_direct(fast, rng, cin, cout, hw, k, stride, pad, dil, batch):
    x = salt(rng, rng.standard_normal((batch, cin) + hw), SPECIAL, 3 * batch + (k == 1) * cin * hw[0] * hw[1] // 20)
    w, b = weights(rng, (cout, cin, k, k)), weights(rng, cout)
    act = ["silu", "relu", None][(cin + k) % 3]
    y, ref = both(lambda isa, nt: ops.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, act=act,
                                             algorithm="direct", isa=isa, num_threads=nt), fast)
    check(y, ref, f"conv {cin}->{cout} {hw} k{k} s{stride} p{pad} d{dil} b{batch} {fast}", 2e-6, scale=conv_scale(x, w, b, stride, pad, dil))
    assert np.isfinite(ref).any() and not np.isfinite(ref).all(), "input should leave finite and non-finite outputs"


@pytest.mark.parametrize("c1,c2", [(3, 5), (16, 16), (17, 15)])
def test_conv2d_two_inputs_and_residual(fast, rng, c1, c2):
    x = salt(rng, rng.standard_normal((2, c1, 7, 9)), SPECIAL, 4)
    x2 = salt(rng, rng.standard_normal((2, c2, 7, 9)), SPECIAL, 4)
    w, b = weights(rng, (17, c1 + c2, 3, 3)), weights(rng, 17)
    r = salt(rng, rng.standard_normal((2, 17, 7, 9)), SPECIAL, 10)
    y, ref = both(lambda isa, nt: ops.conv2d(x, w, b, padding=1, act="silu", x2=x2, residual=r, algorithm="direct",
                                             isa=isa, num_threads=nt), fast)
    check(y, ref, f"conv x2 {c1}+{c2} {fast}", 2e-6, scale=conv_scale(x, w, b, 1, 1, 1, r=r, x2=x2))


def wino_scale(x, w, b, x2=None, m=2):
    """Magnitude of the terms a Winograd F(m x m, 3x3) output sums: its
    (m+2)^2 input tile, whose values reach it through B^T d B and the
    transformed weights, times the largest coefficient product on that path
    (F(2x2): each d in <= 4 entries, |G g G^T| <= 2.25 max |g|: 9; F(4x4):
    B^T's entries reach 5 and A^T's 8, the products of a d's path through
    B^T d B, U and A^T M A stay below 25 * 64 / 16 = 100 of |d| max |g|):
    factor * sum over the tile and input channels of |x| * max_taps |w|, plus
    |b|.  Not the direct conv's |x| (*) |w|: two huge inputs of a tile cancel
    only after the inverse transform."""
    factor = 9 if m == 2 else 100
    xs = finite_abs(x) if x2 is None else np.concatenate([finite_abs(x), finite_abs(x2)], 1)
    B, C, H, W = xs.shape
    TH, TW = (H + m - 1) // m, (W + m - 1) // m
    p = np.zeros((B, C, m * TH + 2, m * TW + 2))
    p[:, :, 1:H + 1, 1:W + 1] = xs
    k = np.repeat(np.repeat(np.abs(w).max((2, 3))[:, :, None, None], m + 2, 2), m + 2, 3).astype(np.float64)
    tile = factor * conv_f64(p, k, stride=m)                          # [B, Cout, TH, TW]
    full = np.repeat(np.repeat(tile, m, 2), m, 3)[:, :, :H, :W]
    return full + np.abs(b).astype(np.float64)[None, :, None, None]


WINO_CASES = [(3, 16, (1, 1)), (16, 17, (5, 7)), (17, 33, (8, 8)), (32, 31, (13, 17)), (9, 9, (6, 3))]


WINO_ALGOS = [("winograd", 2), ("winograd4", 4)]


@pytest.mark.parametrize("algo,m", WINO_ALGOS)
@pytest.mark.parametrize("cin,cout,hw", WINO_CASES)
def test_conv2d_winograd(fast, rng, cin, cout, hw, algo, m):
    x = salt(rng, rng.standard_normal((2, cin) + hw), SPECIAL, 6)
    w, b = weights(rng, (cout, cin, 3, 3), 0.4), weights(rng, cout)
    y, ref = both(lambda isa, nt: ops.conv2d(x, w, b, padding=1, act="silu", algorithm=algo, isa=isa,
                                             num_threads=nt), fast)
    check(y, ref, f"{algo} {cin}->{cout} {hw} {fast}", 2e-6, scale=wino_scale(x, w, b, m=m))


@pytest.mark.parametrize("algo,m", WINO_ALGOS)
def test_conv2d_winograd_two_inputs(fast, rng, algo, m):
    x, x2 = (salt(rng, rng.standard_normal((1, c, 9, 8)), SPECIAL, 4) for c in (16, 17))
    w, b = weights(rng, (20, 33, 3, 3), 0.4), weights(rng, 20)
    y, ref = both(lambda isa, nt: ops.conv2d(x, w, b, padding=1, x2=x2, algorithm=algo, isa=isa,
                                             num_threads=nt), fast)
    check(y, ref, f"{algo} x2 {fast}", 2e-6, scale=wino_scale(x, w, b, x2=x2, m=m))


def tile_reach(bad, m):
    """Output positions a Winograd F(m x m, 3x3) can make non-finite from the
    non-finite input positions `bad` [B, C, H, W]: every output of each tile
    whose (m+2)^2 input tile holds one (the transforms' zero coefficients do
    not cancel an Inf: inf * 0 and inf - inf are NaN)."""
    B, C, H, W = bad.shape
    any_bad = bad.any(1)
    TH, TW = (H + m - 1) // m, (W + m - 1) // m
    out = np.zeros((B, H, W), bool)
    for ty in range(TH):
        for tx in range(TW):
            y0, x0 = m * ty - 1, m * tx - 1
            hit = any_bad[:, max(0, y0):y0 + m + 2, max(0, x0):x0 + m + 2].any((1, 2))
            out[:, m * ty:m * ty + m, m * tx:m * tx + m] |= hit[:, None, None]
    return out[:, None]


def test_winograd_against_direct_nonfinite_pattern(rng):
    """Winograd mixes an input tile before multiplying, so an Inf that the
    direct conv turns into +-Inf can come out as NaN (inf - inf inside the
    transform).  F(2x2, 3x3) keeps NaN and non-finiteness inside each
    output's 3x3 receptive field (its transforms' zeros line up with it): the
    non-finite positions are the direct conv's, and its NaNs stay NaN.
    F(4x4, 3x3) spreads them within the 4x4 output tile (up to 3 pixels from
    the bad input instead of 1): every position the direct conv makes
    non-finite is non-finite (its NaNs NaN), and nothing outside the tiles
    that read a bad input is.  (Not an ISA property: ref and fast paths
    alike.)"""
    x = salt(rng, rng.standard_normal((2, 16, 9, 11)), NONFINITE + DENORMAL, 8)
    w, b = weights(rng, (16, 16, 3, 3), 0.4), weights(rng, 16)
    reach = tile_reach(~np.isfinite(x), 4)
    for isa in ["ref"] + FAST:
        d = ops.conv2d(x, w, b, padding=1, algorithm="direct", isa=isa)
        wi = ops.conv2d(x, w, b, padding=1, algorithm="winograd", isa=isa)
        np.testing.assert_array_equal(np.isfinite(wi), np.isfinite(d))
        assert not (np.isnan(d) & ~np.isnan(wi)).any()
        w4 = ops.conv2d(x, w, b, padding=1, algorithm="winograd4", isa=isa)
        assert not (~np.isfinite(d) & np.isfinite(w4)).any()
        assert not (np.isnan(d) & ~np.isnan(w4)).any()
        assert not (~np.isfinite(w4) & ~reach).any()
        assert (~np.isfinite(w4)).sum() > (~np.isfinite(d)).sum()   # the spread is real (and documented)


# ---- depthwise ---------------------------------------------------------------------------------

DW_CASES = [(4, (6, 11), 1, 1), (5, (9, 9), 2, 1), (1, (5, 5), 1, 1), (3, (7, 9), 2, 1), (8, (9, 8), 1, 1), (9, (6, 13), 1, 2), (15, (11, 7), 2, 1),
            (16, (8, 17), 1, 1), (17, (5, 19), 1, 2), (31, (13, 13), 2, 1), (33, (9, 10), 1, 1), (32, (3, 3), 1, 3)]


@pytest.mark.parametrize("c,hw,stride,dil", DW_CASES)
def test_depthwise(fast, rng, c, hw, stride, dil):
    x = salt(rng, rng.standard_normal((2, c) + hw), SPECIAL, max(2, c * hw[0] * hw[1] // 25))
    w, b = weights(rng, (c, 1, 3, 3)), weights(rng, c)
    act = ["silu", "relu", None][c % 3]
    y, ref = both(lambda isa, nt: ops.depthwise_conv2d(x, w, b, stride=stride, padding=dil, dilation=dil, act=act,
                                                       isa=isa, num_threads=nt), fast)
    s = conv_f64(finite_abs(x), np.abs(w), np.abs(b), stride=stride, padding=dil, dilation=dil, groups=c)
    check(y, ref, f"depthwise c={c} {hw} s{stride} d{dil} {fast}", 2e-6, scale=s)


# ---- normalisations -----------------------------------------------------------------------------

@pytest.mark.parametrize("d", CH + [64, 192])
def test_layer_norm(fast, rng, d):
    x = rng.standard_normal((2, 11, d)).astype(F32)
    x = salt_rows(rng, x, NONFINITE + DENORMAL, 1)
    x = salt_rows(rng, x, HUGE, 1)                     # at most one huge value per row
    x[0, 0] = 1e-40                                    # an all-denormal row
    g, b = weights(rng, d), weights(rng, d)
    y, ref = both(lambda isa, nt: ops.layer_norm(x, g, b, isa=isa, num_threads=nt), fast)
    check(y, ref, f"layer_norm d={d} {fast}", 2e-5, scale=norm_scale(ref))
    # rows holding NaN or Inf are NaN everywhere, as torch
    bad = ~np.isfinite(x).all(-1)
    assert np.isnan(ref[bad]).all() and np.isnan(y[bad]).all()
    if torch is None:
        return
    tr = F.layer_norm(t(x), (d,), t(g), t(b)).numpy()
    assert np.array_equal(np.isnan(tr[bad]), np.isnan(ref[bad]))


@pytest.mark.parametrize("c,hw", [(1, (3, 3)), (8, (5, 7)), (9, (4, 4)), (17, (7, 5)), (33, (6, 6)), (16, (1, 1))])
@pytest.mark.parametrize("specials", ["huge", "nonfinite"])
def test_group_norm1(fast, rng, c, hw, specials):
    """Image 0 ordinary, image 1 salted: huge values are normalised like the
    double-precision reference (one 3e38 once zeroed the whole image on the
    fast paths), a NaN / Inf makes its whole image NaN and only that one."""
    x = rng.standard_normal((2, c) + hw).astype(F32)
    x[1] = salt(rng, x[1], HUGE + DENORMAL if specials == "huge" else NONFINITE, max(1, x[1].size // 8))
    g, b = weights(rng, c), weights(rng, c)
    y, ref = both(lambda isa, nt: ops.group_norm1(x, g, b, isa=isa, num_threads=nt), fast)
    check(y, ref, f"group_norm1 c={c} {hw} {specials} {fast}", 2e-5, scale=norm_scale(ref))
    assert np.isfinite(ref[0]).all()
    if specials == "nonfinite":
        assert np.isnan(ref[1]).all()
    else:
        assert np.isfinite(ref[1]).all()
        if torch is None:
            return
        tr = F.group_norm(t(x.astype(np.float64)), 1, t(g.astype(np.float64)), t(b.astype(np.float64))).numpy()
        check(ref, tr, "group_norm1 ref vs torch (float64)", 2e-5, scale=norm_scale(tr))


# ---- attention ---------------------------------------------------------------------------------

def qkv_input(rng, lead, n, d):
    """[..., n, 3d] with q, k salted by everything and v by NaN / Inf / denormals."""
    q = rng.standard_normal(lead + (n, 3 * d)).astype(F32)
    q[..., : 2 * d] = salt(rng, q[..., : 2 * d], SPECIAL, max(1, q[..., : 2 * d].size // 60))
    q[..., 2 * d:] = salt(rng, q[..., 2 * d:], NONFINITE + DENORMAL, max(1, q[..., 2 * d:].size // 60))
    return q


@pytest.mark.parametrize("n,d,heads", [(1, 8, 1), (7, 16, 2), (16, 24, 3), (17, 32, 4), (33, 12, 1), (40, 64, 4)])
def test_multi_head_attention(fast, rng, n, d, heads):
    q = qkv_input(rng, (3,), n, d)
    y, ref = both(lambda isa, nt: ops.multi_head_attention(q, heads, isa=isa, num_threads=nt), fast)
    check(y, ref, f"attention n={n} d={d} h={heads} {fast}", 2e-5, scale=norm_scale(ref))
    assert np.isfinite(ref).any()


# Head dims on both sides of the 8- and 16-lane register transposes of Q in and O out (17, 20, 24,
# 36), query counts leaving one or a few queries in the last block of 24 (AVX2) / 32 (AVX-512) / 8
# (NEON).  q and k finite (a NaN key would make every row NaN at these sizes), v salted.
@pytest.mark.parametrize("n,d,heads", [(20, 34, 2), (50, 60, 3), (65, 72, 2), (100, 96, 4)])
def test_multi_head_attention_block_edges(fast, rng, n, d, heads):
    q = rng.standard_normal((2, n, 3 * d)).astype(F32)
    q[..., 2 * d:] = salt(rng, q[..., 2 * d:], NONFINITE + DENORMAL, max(1, n // 8))
    y, ref = both(lambda isa, nt: ops.multi_head_attention(q, heads, isa=isa, num_threads=nt), fast)
    check(y, ref, f"attention n={n} d={d} h={heads} {fast}", 2e-5, scale=norm_scale(ref))
    assert np.isfinite(ref).mean() > 0.5


@needs_torch
def test_multi_head_attention_rows_vs_torch(rng):
    """The reference's softmax rows against torch's: a NaN or +Inf score makes
    the query's row NaN, -Inf scores get weight 0, a row of -Inf is NaN."""
    n, d = 9, 8
    q = rng.standard_normal((1, n, 3 * d)).astype(F32)
    q[0, 2, :d] = NAN                       # query 2: NaN scores
    q[0, 4, :d] = 0.0
    q[0, 4, 0] = INF                        # query 4: +-Inf scores (k signs)
    q[0, 6, d:2 * d] = 0.0
    q[0, 6, d] = -INF                       # key 6: +-inf or NaN (0 * -inf) scores
    tq, tk, tv = t(q)[0, :, :d], t(q)[0, :, d:2 * d], t(q)[0, :, 2 * d:]
    tr = (torch.softmax((tq * d ** -0.5) @ tk.T, -1) @ tv)[None].numpy()     # timm's non-fused path
    for isa in mobilevit.available_isas():
        y = ops.multi_head_attention(q, 1, isa=isa)
        masks_equal(y, tr, f"attention {isa} vs torch")


@pytest.mark.parametrize("bits", [0x7FC00000, 0xFFC00000])
def test_softmax_keeps_nan_of_either_sign(bits):
    """A NaN score of either sign makes its softmax row NaN.  inf - inf gives
    the negative default NaN 0xFFC00000, which the AVX-512 exp once clamped
    to exp(-200) = 0 (VRANGEPS returns the other operand for a quiet NaN)."""
    nan = np.array([bits], np.uint32).view(F32)[0]
    q = np.ones((1, 4, 24), F32)
    q[0, 1, 8] = nan                                  # one key -> a NaN score in every query row
    s = np.ones((1, 9, 4, 8), F32)
    s[0, 0, 0, 0] = nan                               # one separable-attention score
    for isa in mobilevit.available_isas():
        assert np.isnan(ops.multi_head_attention(q, 1, isa=isa)).all(), isa
        y = ops.separable_attention(s, isa=isa)
        assert np.isnan(y[:, :, 0::2, 0::2]).all() and np.isfinite(y[:, :, 1::2]).all(), isa


@pytest.mark.parametrize("c,hw,heads", [(8, (4, 6), 2), (17 * 2, (6, 10), 2), (48, (8, 8), 4)])
def test_patch_attention(fast, rng, c, hw, heads):
    d = c - c % heads
    x = np.moveaxis(qkv_input(rng, (2,) + hw, 1, d)[:, :, :, 0, :], 3, 1)    # [B, 3d, H, W]
    y, ref = both(lambda isa, nt: ops.patch_attention(x, heads, isa=isa, num_threads=nt), fast)
    check(y, ref, f"patch attention d={d} {hw} {fast}", 2e-5, scale=norm_scale(ref))


@pytest.mark.parametrize("d,hw", [(1, (4, 4)), (8, (6, 4)), (9, (6, 10)), (16, (8, 8)), (17, (14, 6)), (33, (4, 10))])
def test_separable_attention(fast, rng, d, hw):
    x = rng.standard_normal((2, 1 + 2 * d) + hw).astype(F32)
    x[:, :1] = salt(rng, x[:, :1], NONFINITE + DENORMAL, 2)                 # query scores (one per pixel)
    x[:, 1:] = salt(rng, x[:, 1:], SPECIAL, max(2, x[:, 1:].size // 80))     # keys and values
    y, ref = both(lambda isa, nt: ops.separable_attention(x, isa=isa, num_threads=nt), fast)
    check(y, ref, f"separable attention d={d} {hw} {fast}", 2e-5, scale=norm_scale(ref))


def test_separable_attention_relu_keeps_nan():
    """out = relu(v) * context: relu(NaN) = NaN as torch (the reference and
    every fast path once gave 0 * context there)."""
    d = 4
    x = np.ones((1, 1 + 2 * d, 2, 2), F32)
    x[0, 1 + d, 0, 0] = NAN
    x[0, 1 + d + 1, 0, 0] = -INF
    for isa in mobilevit.available_isas():
        y = ops.separable_attention(x, isa=isa)
        assert np.isnan(y[0, 0, 0, 0]) and y[0, 1, 0, 0] == 0.0 and np.isfinite(np.delete(y.ravel(), 0)).all()


# ---- fused inverted residual (expand -> depthwise -> project through one graph node) ---------------

def invres_graph(rng, cin, ce, stride, residual):
    g = _GraphBuilder()
    w1, b1 = weights(rng, (ce, cin, 1, 1)), weights(rng, ce)
    w2, b2 = weights(rng, (ce, 1, 3, 3)), weights(rng, ce)
    w3, b3 = weights(rng, (cin, ce, 1, 1)), weights(rng, cin)
    h = g.conv(0, w1, b1, 1, act=ACT_SILU)
    h = g.dwconv(h, w2, b2, stride=stride, act=ACT_SILU)
    y = g.conv(h, w3, b3, 1, residual=0 if residual else None)
    return _C.Graph(cin, g.nodes), y


@pytest.mark.parametrize("cin,ce,hw,stride", [(3, 16, (7, 9), 1), (9, 33, (8, 11), 1), (16, 64, (9, 6), 2)])
def test_fused_inverted_residual(fast, rng, cin, ce, hw, stride):
    graph, out = invres_graph(rng, cin, ce, stride, residual=stride == 1)
    x = salt(rng, rng.standard_normal((2, cin) + hw), SPECIAL, 3)
    res = {}
    for isa in ("ref", fast):
        mobilevit.set_isa(isa)
        for fusion in (0, -1):
            graph.set_fusion(fusion)
            modes = graph.node_modes(2, *hw)
            assert (modes[0] == 1) == (fusion == 0), modes
            res[isa, fusion] = threads_agree(lambda n: graph.run(x, (out,), n)[0])
        np.testing.assert_array_equal(res[isa, 0], res[isa, -1])      # fused == unfused, bit for bit
    ref = res["ref", -1]
    assert np.isfinite(ref).any() and not np.isfinite(ref).all()
    check(res[fast, 0], ref, f"invres {cin}/{ce} {hw} s{stride} {fast}", 1e-5, scale=np.maximum(1.0, np.abs(ref)))


# ---- reference-only ops against torch ---------------------------------------------------------------

@needs_torch
def test_add_concat_copies_vs_torch(rng):
    a = salt(rng, rng.standard_normal((2, 9, 5, 7)), SPECIAL, 40)
    b = salt(rng, rng.standard_normal((2, 9, 5, 7)), SPECIAL, 40)
    for nt in (1, 2):
        y, tr = ops.add(a, b, num_threads=nt), (t(a) + t(b)).numpy()
        masks_equal(y, tr, "add")
        fin = ~np.isnan(tr)
        np.testing.assert_array_equal(y[fin].view(np.uint32), tr[fin].view(np.uint32))
        c = ops.concat(a, b[:, :4], num_threads=nt)
        np.testing.assert_array_equal(c.view(np.uint32), torch.cat([t(a), t(b[:, :4])], 1).numpy().view(np.uint32))
        u = ops.unfold(a[:, :, :4, :6], 2, num_threads=nt)
        f = ops.fold(u, 2, 4, 6, 2, num_threads=nt)
        np.testing.assert_array_equal(f.view(np.uint32), np.ascontiguousarray(a[:, :, :4, :6]).view(np.uint32))
        p = ops.crop_pad(a, (7, 4), num_threads=nt)
        tp = F.pad(t(a[:, :, :, :4]), (0, 0, 0, 2)).numpy()
        np.testing.assert_array_equal(p.view(np.uint32), tp.view(np.uint32))


@needs_torch
def test_batch_norm_resize_gap_vs_torch(rng):
    c = 17
    x = salt(rng, rng.standard_normal((2, c, 7, 9)), NONFINITE + DENORMAL, 12)
    x = salt(rng, x, HUGE, 4)
    mean, var = weights(rng, c), rng.uniform(0.5, 2, c).astype(F32)
    g, b = weights(rng, c), weights(rng, c)
    for nt in (1, 2):
        y = ops.batch_norm(x, mean, var, g, b, num_threads=nt)
        tr = F.batch_norm(t(x), t(mean), t(var), t(g), t(b), eps=1e-5).numpy()
        check(y, tr, "batch_norm vs torch", 1e-6, scale=norm_scale(tr))
        for size, ac in (((13, 5), False), ((4, 17), True), ((7, 9), False), ((7, 4), True), ((3, 9), False)):
            y = ops.interpolate_bilinear(x, size, align_corners=ac, num_threads=nt)
            tr = F.interpolate(t(x), size=size, mode="bilinear", align_corners=ac).numpy()
            s = F.interpolate(t(finite_abs(x)), size=size, mode="bilinear", align_corners=ac).numpy()
            check(y, tr, f"bilinear {size} {ac} vs torch", 1e-5, scale=np.maximum(1.0, s))
    xs = salt_rows(rng, rng.standard_normal((2, c, 1, 30)).astype(F32), SPECIAL, 1)   # <= 1 huge per channel
    for nt in (1, 2):
        y = ops.global_avg_pool(xs, num_threads=nt)
        tr = t(xs).mean((2, 3)).numpy()
        check(y, tr, "global_avg_pool vs torch", 1e-6, scale=np.maximum(1.0, finite_abs(xs).mean((2, 3))))


# ---- denormals are never flushed (no FTZ / DAZ anywhere) -------------------------------------------

@pytest.mark.parametrize("isa", mobilevit.available_isas())
def test_denormals_not_flushed(isa):
    tiny = F32(1e-40)
    c = 17
    x = np.full((2, c, 5, 7), tiny, F32)
    eye = np.eye(c, dtype=F32)
    dw = np.zeros((c, 1, 3, 3), F32)
    dw[:, 0, 1, 1] = 1.0
    for nt in (1, 2):
        assert (ops.conv1x1(x, eye[:, :, None, None], isa=isa, num_threads=nt) == tiny).all()
        assert (ops.linear(x.reshape(-1, c), eye, isa=isa, num_threads=nt) == tiny).all()
        assert (ops.depthwise_conv2d(x, dw, isa=isa, num_threads=nt) == tiny).all()
        assert (ops.relu(x, isa=isa, num_threads=nt) == tiny).all()
        assert (ops.silu(x, isa=isa, num_threads=nt) == tiny / F32(2)).all()
        # a product that is denormal only as a result (FTZ would give 0)
        e = F32(1e-20)
        assert (ops.linear(np.full((3, 1), e), np.full((1, 1), e), isa=isa, num_threads=nt) == e * e).all()
    # and the calling thread's floating-point mode is untouched
    assert np.float32(1e-40) * np.float32(1.0) == tiny and np.float32(1e-20) * np.float32(1e-20) != 0


# ---- exhaustive sweep (opt-in) ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("cin", CH)
@pytest.mark.parametrize("cout", CH)
def test_slow_sweep_conv_dw_gemm(fast, rng, cin, cout):
    for hw in [(1, 1), (3, 5), (7, 7), (8, 9), (16, 17)]:
        for stride in (1, 2):
            x = salt(rng, rng.standard_normal((2, cin) + hw), SPECIAL, 3)
            w, b = weights(rng, (cout, cin, 3, 3)), weights(rng, cout)
            y, ref = both(lambda isa, nt: ops.conv2d(x, w, b, stride=stride, padding=1, act="silu",
                                                     algorithm="direct", isa=isa, num_threads=nt), fast)
            check(y, ref, f"conv {cin}->{cout} {hw} s{stride}", 2e-6, scale=conv_scale(x, w, b, stride, 1, 1))
            if stride == 1:
                w4 = weights(rng, (cout, cin, 3, 3), 0.4)
                y, ref = both(lambda isa, nt: ops.conv2d(x, w4, b, padding=1, algorithm="winograd", isa=isa,
                                                         num_threads=nt), fast)
                check(y, ref, f"winograd {cin}->{cout} {hw}", 2e-6, scale=wino_scale(x, w4, b))
            if cin == cout:
                wd = weights(rng, (cin, 1, 3, 3))
                y, ref = both(lambda isa, nt: ops.depthwise_conv2d(x, wd, b, stride=stride, act="relu", isa=isa,
                                                                   num_threads=nt), fast)
                s = conv_f64(finite_abs(x), np.abs(wd), np.abs(b), stride=stride, padding=1, groups=cin)
                check(y, ref, f"depthwise {cin} {hw} s{stride}", 2e-6, scale=s)
        xm = salt(rng, rng.standard_normal((37, cin)), SPECIAL, 8)
        wm, bm = weights(rng, (cout, cin)), weights(rng, cout)
        y, ref = both(lambda isa, nt: ops.linear(xm, wm, bm, act="silu", isa=isa, num_threads=nt), fast)
        check(y, ref, f"linear {cin}->{cout}", 2e-6,
              scale=finite_abs(xm) @ np.abs(wm.T.astype(np.float64)) + np.abs(bm))
