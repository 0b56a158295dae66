"""Atheris harness: argument validation of the C entry points of ``mobilevit._C``.

Every call gets fuzzer-chosen arrays (shape, dtype, memory layout, values), ints (including values
at and beyond the C ``int`` range) and floats.  The only acceptable outcomes are a result or one of
TypeError / ValueError / MemoryError / OverflowError / NotImplementedError; anything else -- a
different exception, a crash, an ASan/UBSan report -- is a bug.  Results are checked for the output
shape the entry point documents where that is cheap.

Allocations stay small: array dimensions are capped, and a call whose *output* would be large
(because a size argument is huge and the C code would legitimately allocate it) is skipped after
computing that size with the C code's own 32-bit arithmetic.  Graphs run under a
``set_max_bytes`` cap.

Run::

    python tests/fuzz/fuzz_c_api.py tests/fuzz/corpus/c_api -max_total_time=60

For memory errors inside the extension, use the ASan/UBSan build made by ``.ci/sanitize.sh``
(``.ci/fuzz.sh`` does this with ``FUZZ_SANITIZE=1``).  ``TestOneInput`` does not need atheris: the
input is decoded by a small deterministic byte reader, so ``tests/test_fuzz_smoke.py`` replays the
seed corpus without it.
"""
from __future__ import annotations

import contextlib
import os
import sys

try:
    import atheris
except ImportError:  # the smoke test replays the corpus without atheris
    atheris = None

try:  # the installed package (or PYTHONPATH); else the source tree this file sits in
    import mobilevit._C  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    for _m in [m for m in sys.modules if m == "mobilevit" or m.startswith("mobilevit.")]:
        del sys.modules[_m]

_instrument = atheris.instrument_imports(include=["mobilevit"]) if atheris else contextlib.nullcontext()
with _instrument:
    import numpy as np
    import mobilevit  # noqa: F401
    from mobilevit import _C

ACCEPTED = (TypeError, ValueError, MemoryError, OverflowError, NotImplementedError)

MAX_DIM = 12            # any array dimension
MAX_ELEMS = 4096        # any array
MAX_OUT_FLOATS = 1 << 22  # skip calls whose output / scratch would exceed 16 MiB
INT32 = 1 << 32

# ints at and beyond the edges of C int, plus small values
EXTREME_INTS = [0, -1, 1, 2, 3, 7, 8, 65535, 65536, (1 << 30), (1 << 30) + 1, (1 << 31) - 1,
                -(1 << 31), (1 << 31), -(1 << 31) - 1, (1 << 63), -(1 << 63), (1 << 64), 1000000000]
SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, float("nan"), float("inf"), float("-inf"), 1e30, -1e30,
                  1e-40, 3.4028235e38, -3.4028235e38, 1e-7, 65504.0]
HUGE_DIMS = [(1 << 31), (1 << 32) + 3, (1 << 33), 65536 * 65536 + 1, (1 << 31) + 5]
if os.environ.get("FUZZ_C_API_SPIN") == "1":
    HUGE_DIMS += [(1 << 31) - 1, (1 << 30) + 7]
DTYPES = ["f4", "f4", "f4", "f4", "f8", "f2", "i4", "u1", "?", ">f4", "i8", "c8", "O", "U1", "M8[s]"]


def _wrap32(v: int) -> int:
    """C int arithmetic as the extension is built (CPython passes -fwrapv)."""
    v &= INT32 - 1
    return v - INT32 if v >= (1 << 31) else v


class Reader:
    """Deterministic decoding of the fuzzer's bytes (zero once exhausted)."""

    def __init__(self, data: bytes):
        self.d = data
        self.i = 0

    def u8(self) -> int:
        if self.i < len(self.d):
            v = self.d[self.i]
            self.i += 1
            return v
        return 0

    def u16(self) -> int:
        return self.u8() | (self.u8() << 8)

    def below(self, n: int) -> int:
        return self.u8() % n if n > 0 else 0

    def pick(self, seq):
        return seq[self.u8() % len(seq)]

    def flag(self, p256: int = 128) -> bool:
        """True with probability about p256/256."""
        return self.u8() < p256

    def int_arg(self, lo: int, hi: int) -> int:
        """Mostly in [lo, hi]; sometimes an extreme value."""
        b = self.u8()
        if b < 224:
            return lo + self.u8() % (hi - lo + 1)
        return EXTREME_INTS[b % len(EXTREME_INTS)]

    def float_arg(self) -> float:
        b = self.u8()
        if b < 128:
            return self.pick(SPECIAL_FLOATS)
        return (self.u16() - 32768) / 1024.0

    def dim(self, want=None) -> int:
        """An array dimension: the wanted one most of the time, else small."""
        b = self.u8()
        if want is not None and b < 176:
            return max(0, min(int(want), MAX_DIM))
        return b % (MAX_DIM + 1) if b < 248 else 0


def _values(r: Reader, n: int) -> np.ndarray:
    seed = r.u16()
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(n).astype(np.float64)
    if n and r.flag(48):
        k = r.below(4) + 1
        for _ in range(k):
            v[r.below(n)] = r.pick(SPECIAL_FLOATS)
    return v


def make_array(r: Reader, want_shape, allow_odd=True):
    """An array-like for a parameter that expects ``len(want_shape)`` dims of (about) these sizes."""
    kind = r.u8()
    if allow_odd and kind >= 240:
        odd = kind % 8
        if odd == 0:
            return None
        if odd == 1:
            return r.float_arg()
        if odd == 2:
            return "not an array"
        if odd == 3:  # nested list
            shape = [r.dim(w) for w in want_shape]
            n = int(np.prod(shape)) if shape else 1
            if n > MAX_ELEMS:
                return [1.0]
            return _values(r, n).reshape(shape).tolist()
        if odd == 4:  # zero-size array with one huge dimension (no memory, huge int dims)
            shape = [r.dim(w) for w in want_shape] or [0]
            i = r.below(len(shape))
            j = (i + 1 + r.below(max(1, len(shape) - 1))) % len(shape) if len(shape) > 1 else i
            # C sees these through an int cast: 2**32+3 -> 3, 2**33 -> 0, 2**31+5 -> negative.
            # Dims that stay huge (2**31-1) make kernels loop over B*H*W with C == 0 for minutes
            # (reported); they are only drawn with FUZZ_C_API_SPIN=1.
            shape[i] = r.pick(HUGE_DIMS)
            shape[j] = 0
            if i == j:
                shape[i] = 0
            try:
                return np.empty(shape, np.float32)
            except (ValueError, MemoryError):
                return np.empty(0, np.float32)
        if odd == 5:  # wrong number of dimensions
            nd = r.below(6)
            shape = [r.below(4) + 1 for _ in range(nd)]
            return _values(r, int(np.prod(shape))).astype(np.float32).reshape(shape)
        if odd == 6:  # a 0-d array
            return np.float32(r.float_arg())
        return np.zeros(want_shape and [0] * len(want_shape) or [0], np.float32)
    shape = [r.dim(w) for w in want_shape]
    n = 1
    for s in shape:
        n *= s
    if n > MAX_ELEMS:
        shape = [min(s, 4) for s in shape]
        n = int(np.prod(shape)) if shape else 1
    dt = np.dtype(r.pick(DTYPES)) if r.flag(64) else np.dtype("f4")
    vals = _values(r, n)
    layout = r.below(8)
    with np.errstate(all="ignore"):
        if dt.kind == "O":
            a = vals.astype(object)
        elif dt.kind == "U":
            a = vals.astype("U1")
        elif dt.kind == "M":
            a = np.zeros(n, dt)
        elif dt.kind in "iub":
            a = np.nan_to_num(vals, nan=0.0, posinf=0.0, neginf=0.0).clip(-100, 100).astype(dt)
        else:
            a = vals.astype(dt)
    a = a.reshape(shape)
    if layout == 1 and a.ndim >= 2:  # Fortran order
        a = np.asfortranarray(a)
    elif layout == 2 and a.ndim >= 1:  # negative stride
        a = np.flip(np.flip(a, 0).copy(), 0)
    elif layout == 3 and a.ndim >= 1 and n:  # non-unit step along the last axis
        big = np.repeat(a, 2, axis=-1)
        a = big[..., ::2]
    elif layout == 4 and dt.kind not in "OUM" and n:  # unaligned
        raw = bytearray(a.nbytes + 1)
        b = np.frombuffer(raw, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        b[...] = a
        a = b
    elif layout == 5:  # read-only
        a = a.copy()
        a.flags.writeable = False
    elif layout == 6 and a.ndim >= 2:  # swapped axes (transposed view)
        a = np.swapaxes(a, 0, 1)
    return a


def _dims(a, nd):
    """The dimensions the C code sees, as C ints, if ``a`` becomes an nd float32 array."""
    try:
        arr = np.asarray(a)
    except Exception:
        return None
    if arr.ndim != nd:
        return None
    return [_wrap32(int(s)) for s in arr.shape]


# FUZZ_SKIP_KNOWN=1 steers around bugs already reported (so long runs can look for new ones):
# 32-bit overflow of the conv output size (2*pad, dil*(k-1)) and of fold's B*ph*pw check.
SKIP_KNOWN = os.environ.get("FUZZ_SKIP_KNOWN") == "1"


def _overflows(*vals) -> bool:
    return any(not -(1 << 31) <= v < (1 << 31) for v in vals)


def _conv_out(n, k, s, p, d):
    if s < 1:
        return 0
    num = _wrap32(_wrap32(_wrap32(n + _wrap32(2 * p)) - _wrap32(d * (k - 1))) - 1)
    q = abs(num) // s * (1 if num >= 0 else -1)  # C division truncates toward zero
    return _wrap32(q + 1)


def _too_big(*factors) -> bool:
    p = 1
    for f in factors:
        if f <= 0:
            return False
        p *= f
    return p > MAX_OUT_FLOATS


def _check_shape(out, shape):
    # zero-size inputs may carry dims beyond C int (numpy keeps them in the output): no shape oracle
    if isinstance(out, np.ndarray) and shape is not None and out.size:
        assert out.shape == tuple(shape), (out.shape, shape)
        assert out.dtype == np.float32


def _isa(r):
    b = r.u8()
    if b < 160:
        return -1
    if b < 230:
        return b % 3
    return r.pick([3, 4, 100, -2, -(1 << 31), (1 << 31) - 1, 1 << 40])


def _nth(r):
    b = r.u8()
    if b < 200:
        return b % 3
    return r.pick([-1, -(1 << 31), 0, 1, 2, 3, 4, (1 << 40)])


def _act(r):
    b = r.u8()
    return b % 3 if b < 230 else r.pick([-1, 3, 100, (1 << 31) - 1, -(1 << 31)])


# ----------------------------------------------------------------------------------------------------
# one target per entry point
# ----------------------------------------------------------------------------------------------------

def t_conv2d(r):
    B, H, W, C1, Co = r.below(3), r.below(9) + 1, r.below(9) + 1, r.below(5) + 1, r.below(5) + 1
    kh, kw = r.pick([1, 1, 3, 3, 2, 5]), r.pick([1, 1, 3, 3, 2, 5])
    use_x2 = r.flag(64)
    C2 = r.below(4) + 1 if use_x2 else 0
    x = make_array(r, [B, H, W, C1])
    w = make_array(r, [Co, C1 + C2, kh, kw])
    bias = make_array(r, [Co]) if r.flag(160) else None
    stride, pad, dil = r.int_arg(1, 3), r.int_arg(0, 3), r.int_arg(1, 3)
    act = _act(r)
    x2 = make_array(r, [B, H, W, C2]) if use_x2 else None
    xd, wd = _dims(x, 4), _dims(w, 4)
    OH = OW = None
    if xd and wd:
        if SKIP_KNOWN and _overflows(2 * pad, dil * (max(wd[2], wd[3]) - 1), xd[1] + 2 * pad, xd[2] + 2 * pad):
            return
        OH = _conv_out(xd[1], wd[2], stride, pad, dil) if -INT32 < stride < INT32 else 0
        OW = _conv_out(xd[2], wd[3], stride, pad, dil) if -INT32 < stride < INT32 else 0
        if _too_big(max(xd[0], 1), OH, OW, wd[0]):
            return
    res = make_array(r, [B, OH or 1, OW or 1, Co]) if r.flag(48) else None
    algo = r.pick([0, 0, 1, 2, 2, 3, -1])     # auto / direct / winograd / invalid
    out = _C.conv2d(x, w, bias, stride, pad, dil, act, x2, res, _isa(r), _nth(r), algo)
    _check_shape(out, (xd[0], OH, OW, wd[0]) if xd and wd else None)


def t_dwconv2d(r):
    B, H, W, C = r.below(3), r.below(9) + 1, r.below(9) + 1, r.below(9) + 1
    x = make_array(r, [B, H, W, C])
    w = make_array(r, [C, 1, 3, 3])
    bias = make_array(r, [C]) if r.flag(160) else None
    stride, pad, dil = r.int_arg(1, 3), r.int_arg(0, 3), r.int_arg(1, 3)
    xd = _dims(x, 4)
    OH = OW = None
    if xd:
        if SKIP_KNOWN and _overflows(2 * pad, 2 * dil, xd[1] + 2 * pad, xd[2] + 2 * pad):
            return
        OH = _conv_out(xd[1], 3, stride, pad, dil) if -INT32 < stride < INT32 else 0
        OW = _conv_out(xd[2], 3, stride, pad, dil) if -INT32 < stride < INT32 else 0
        if _too_big(max(xd[0], 1), OH, OW, max(xd[3], 1)):
            return
    out = _C.dwconv2d(x, w, bias, stride, pad, dil, _act(r), _isa(r), _nth(r))
    _check_shape(out, (xd[0], OH, OW, xd[3]) if xd else None)


def t_gemm(r):
    M, K, N = r.below(13), r.below(12) + 1, r.below(12) + 1
    a = make_array(r, [M, K])
    w = make_array(r, [N, K])
    bias = make_array(r, [N]) if r.flag(160) else None
    res = make_array(r, [M, N]) if r.flag(64) else None
    out = _C.gemm(a, w, bias, res, _act(r), _isa(r), _nth(r))
    ad, wd = _dims(a, 2), _dims(w, 2)
    _check_shape(out, (ad[0], wd[0]) if ad and wd else None)


def t_attention(r):
    heads, ph, pw = r.int_arg(1, 3), r.int_arg(1, 2), r.int_arg(1, 2)
    hd = r.below(4) + 1
    B, H, W = r.below(3), r.below(4) * 2 + 1, r.below(4) * 2 + 1
    C3 = 3 * max(heads, 1) * hd if -INT32 < heads < 64 else 3 * hd
    q = make_array(r, [B, H, W, C3])
    scale = r.float_arg()
    out = _C.attention(q, heads, ph, pw, scale, _isa(r), _nth(r))
    qd = _dims(q, 4)
    _check_shape(out, (qd[0], qd[1], qd[2], qd[3] // 3) if qd else None)


def t_sep_attention(r):
    ph, pw = r.int_arg(1, 2), r.int_arg(1, 2)
    D = r.below(5) + 1
    B, H, W = r.below(3), r.below(4) * 2 + 1, r.below(4) * 2 + 1
    q = make_array(r, [B, H, W, 1 + 2 * D])
    out = _C.sep_attention(q, ph, pw, _isa(r), _nth(r))
    qd = _dims(q, 4)
    _check_shape(out, (qd[0], qd[1], qd[2], (qd[3] - 1) // 2) if qd else None)


def t_layernorm(r):
    M, D = r.below(9), r.below(12) + 1
    x = make_array(r, [M, D])
    g, b = make_array(r, [D]), make_array(r, [D])
    eps = r.float_arg()
    out = _C.layernorm(x, g, b, eps, _isa(r), _nth(r))
    _check_shape(out, _dims(x, 2))


def t_groupnorm1(r):
    B, H, W, C = r.below(3), r.below(5) + 1, r.below(5) + 1, r.below(6) + 1
    x = make_array(r, [B, H, W, C])
    out = _C.groupnorm1(x, make_array(r, [C]), make_array(r, [C]), r.float_arg(), _isa(r), _nth(r))
    _check_shape(out, _dims(x, 4))


def t_batchnorm(r):
    M, C = r.below(9), r.below(8) + 1
    x = make_array(r, [M, C])
    ps = [make_array(r, [C]) for _ in range(4)]
    out = _C.batchnorm(x, *ps, r.float_arg(), _nth(r))
    _check_shape(out, _dims(x, 2))


def t_act(r):
    nd = r.below(4)
    x = make_array(r, [r.below(6) + 1 for _ in range(nd)])
    out = _C.act(x, _act(r), _isa(r), _nth(r))
    if isinstance(out, np.ndarray):
        assert out.shape == np.shape(x)


def t_add(r):
    nd = r.below(4)
    shape = [r.below(6) + 1 for _ in range(nd)]
    out = _C.add(make_array(r, shape), make_array(r, shape), _nth(r))
    if isinstance(out, np.ndarray):
        assert out.dtype == np.float32


def t_concat(r):
    M = r.below(8)
    a, b = make_array(r, [M, r.below(6) + 1]), make_array(r, [M, r.below(6) + 1])
    out = _C.concat(a, b, _nth(r))
    ad, bd = _dims(a, 2), _dims(b, 2)
    _check_shape(out, (ad[0], ad[1] + bd[1]) if ad and bd else None)


def t_resize(r):
    B, H, W, C = r.below(3), r.below(8) + 1, r.below(8) + 1, r.below(4) + 1
    x = make_array(r, [B, H, W, C])
    OH, OW = r.int_arg(1, 17), r.int_arg(1, 17)
    ac = r.pick([0, 1, True, False, 2, None, "yes"])
    xd = _dims(x, 4)
    if xd and _too_big(max(xd[0], 1), OH, OW, max(xd[3], 1)):
        return
    out = _C.resize_bilinear(x, OH, OW, ac, _nth(r))
    _check_shape(out, (xd[0], OH, OW, xd[3]) if xd else None)


def t_unfold(r):
    ph, pw = r.int_arg(1, 3), r.int_arg(1, 3)
    B, H, W, C = r.below(3), r.below(4) * 2 + 2, r.below(4) * 2 + 2, r.below(4) + 1
    x = make_array(r, [B, H, W, C])
    out = _C.unfold(x, ph, pw, _nth(r))
    xd = _dims(x, 4)
    if isinstance(out, np.ndarray) and xd:
        assert out.shape == (xd[0] * ph * pw, (xd[1] // ph) * (xd[2] // pw), xd[3]), out.shape


def t_fold(r):
    ph, pw = r.int_arg(1, 3), r.int_arg(1, 3)
    B, H, W, C = r.int_arg(0, 2), r.int_arg(1, 4) , r.int_arg(1, 4), r.below(4) + 1
    if 0 < ph < 8 and 0 < pw < 8 and 0 < H < 8 and 0 < W < 8:
        H, W = H * ph, W * pw
    try:
        want = [B * ph * pw, (H // ph) * (W // pw), C]
    except ZeroDivisionError:
        want = [1, 1, C]
    t = make_array(r, want)
    if _too_big(max(B, 1), H, W, C):
        return
    if SKIP_KNOWN and (_overflows(B * ph, B * ph * pw) or ph == 0 or pw == 0
                       or _overflows((H // ph) * (W // pw))):
        return
    out = _C.fold(t, B, H, W, ph, pw, _nth(r))
    if isinstance(out, np.ndarray):
        assert out.shape[:3] == (B, H, W), out.shape


def t_crop_pad(r):
    B, H, W, C = r.below(3), r.below(8) + 1, r.below(8) + 1, r.below(4) + 1
    x = make_array(r, [B, H, W, C])
    OH, OW = r.int_arg(1, 17), r.int_arg(1, 17)
    xd = _dims(x, 4)
    if xd and _too_big(max(xd[0], 1), OH, OW, max(xd[3], 1)):
        return
    out = _C.crop_pad(x, OH, OW, _nth(r))
    _check_shape(out, (xd[0], OH, OW, xd[3]) if xd else None)


def t_gap(r):
    x = make_array(r, [r.below(3), r.below(6) + 1, r.below(6) + 1, r.below(6) + 1])
    out = _C.global_avg_pool(x, _nth(r))
    xd = _dims(x, 4)
    _check_shape(out, (xd[0], xd[3]) if xd else None)


def t_layout(r):
    x = make_array(r, [r.below(3), r.below(5) + 1, r.below(5) + 1, r.below(5) + 1])
    f = _C.nchw_to_nhwc if r.flag() else _C.nhwc_to_nchw
    out = f(x, _nth(r))
    if isinstance(out, np.ndarray):
        assert out.size == np.asarray(x).size


# ---- Graph -------------------------------------------------------------------------------------

_OP_NAMES = sorted(_C.OPS, key=_C.OPS.get)


def _node(r, i, chans):
    """A node dict reading tensors < i+1, with parameters sized as the C code expects most of the
    time; sometimes an unknown op, a missing or unknown field, or a field of the wrong type."""
    op = r.pick(_OP_NAMES) if r.u8() < 240 else r.pick(["", "nope", 7, None])
    nin = r.pick([1, 1, 1, 2, 2, 3, 0])
    ins = [r.below(i + 1) if r.u8() < 245 else r.pick([-1, i + 1, 1 << 31, 5000]) for _ in range(nin)]
    c0 = chans[ins[0]] if ins and 0 <= ins[0] < len(chans) else 1
    c1 = chans[ins[1]] if len(ins) > 1 and 0 <= ins[1] < len(chans) else 0
    f = {}
    cout = c0
    w = bias = gamma = None
    if op == "conv":
        k = r.pick([1, 1, 3, 2])
        f = dict(kh=k if not r.flag(16) else r.int_arg(0, 70), kw=k, stride=r.int_arg(1, 2), pad=r.int_arg(0, 1),
                 dilation=r.int_arg(1, 2), act=_act(r), concat=int(r.flag(40)), residual=int(r.flag(40)))
        cout = r.int_arg(1, 6)
        cin = c0 + (c1 if f["concat"] and nin > 1 else 0)
        wn = cout * cin * max(f["kh"], 0) * max(f["kw"], 0) if 0 < cout < 64 else 1
        w = _values(r, min(wn, MAX_ELEMS) if r.u8() < 240 else r.below(8)).astype(np.float32)
        bias = _values(r, cout if 0 < cout < 64 else 1).astype(np.float32) if r.flag(200) else None
    elif op == "dwconv":
        f = dict(stride=r.int_arg(1, 2), pad=r.int_arg(0, 1), dilation=r.int_arg(1, 2), act=_act(r))
        w = _values(r, 9 * c0 if r.u8() < 240 else r.below(20)).astype(np.float32)
        bias = _values(r, c0).astype(np.float32) if r.flag(200) else None
    elif op in ("layernorm", "groupnorm1"):
        f = dict(eps=r.float_arg() if r.flag(64) else 1e-5)
        gamma = _values(r, c0 if r.u8() < 240 else r.below(8)).astype(np.float32)
        bias = _values(r, c0).astype(np.float32) if r.flag(240) else None
    elif op == "attention":
        f = dict(heads=r.int_arg(1, 2), patch_h=r.int_arg(1, 2), patch_w=r.int_arg(1, 2),
                 scale=r.float_arg() if r.flag(64) else 0.5)
        cout = c0 // 3 if c0 >= 3 else r.int_arg(1, 4)
    elif op == "sep_attention":
        f = dict(patch_h=r.int_arg(1, 2), patch_w=r.int_arg(1, 2))
        cout = (c0 - 1) // 2 if c0 >= 3 else r.int_arg(1, 4)
    elif op == "resize":
        f = dict(like=r.int_arg(0, 1), multiple_h=r.int_arg(1, 4), multiple_w=r.int_arg(1, 4),
                 align_corners=r.int_arg(0, 1))
    elif op == "crop_pad":
        f = dict(like=r.int_arg(0, 1), multiple_h=r.int_arg(1, 4), multiple_w=r.int_arg(1, 4))
    elif op == "concat":
        cout = c0 + c1
    elif op == "act":
        f = dict(act=_act(r))
    if r.flag(20):
        cout = r.int_arg(0, 8)
    if f and r.u8() >= 248:                  # a missing field, an unknown one, or a wrong type
        key = r.pick(sorted(f))
        choice = r.below(3)
        if choice == 0:
            del f[key]
        elif choice == 1:
            f[key + "_typo"] = 1
        else:
            f[key] = r.pick(["1", None, [1], 1e300])
    node = dict(op=op, inputs=tuple(ins), cout=cout, weight=w, bias=bias, gamma=gamma, **f)
    return node, cout


def t_graph(r):
    in_ch = r.int_arg(1, 4)
    n = r.below(6) + 1
    chans = [in_ch if 0 < in_ch < 64 else 1]
    nodes = []
    for i in range(n):
        node, cout = _node(r, i, chans)
        nodes.append(node)
        chans.append(cout if isinstance(cout, int) and 0 < cout < 64 else 1)
    if r.u8() >= 250:
        nodes = tuple(nodes) if r.flag() else [("not", "a", "node")]
    g = _C.Graph(in_ch, nodes)
    g.set_max_bytes(1 << 24)
    if r.flag(96):      # fuse every inverted residual chain / none / from a random size
        g.set_fusion(r.pick([0, 0, -1, 4096, r.int_arg(-3, 1 << 20)]))
    if r.flag(64):
        g.set_winograd(r.flag())
    for _ in range(r.below(3) + 1):
        x = make_array(r, [r.below(3), in_ch, r.below(9) + 1, r.below(9) + 1])
        ids = tuple(r.below(n) + 1 if r.u8() < 245 else r.pick([0, -1, n + 1, 1 << 31])
                    for _ in range(r.below(3) + 1))
        prof = [] if r.flag(40) else None
        outs = g.run(x, ids, _nth(r), prof)
        assert isinstance(outs, list) and len(outs) == len(ids)
        for o in outs:
            assert isinstance(o, np.ndarray) and o.ndim == 4 and o.dtype == np.float32
        if prof is not None:
            assert len(prof) in (0, n), (len(prof), n)  # empty batch: nothing timed
        if r.flag(40):
            g.plan_bytes(r.int_arg(1, 3), r.int_arg(1, 64), r.int_arg(1, 64), _nth(r))
        if r.flag(40):
            modes = g.node_modes(r.int_arg(1, 3), r.int_arg(1, 64), r.int_arg(1, 64))
            assert len(modes) == n and set(modes) <= {_C.MODE_ALONE, _C.MODE_FUSED_HEAD, _C.MODE_FUSED_INNER,
                                                      _C.MODE_FUSED_TAIL}, modes
        if r.flag(40):
            g.release()


TARGETS = [t_conv2d, t_dwconv2d, t_gemm, t_attention, t_sep_attention, t_layernorm, t_groupnorm1,
           t_batchnorm, t_act, t_add, t_concat, t_resize, t_unfold, t_fold, t_crop_pad, t_gap, t_layout,
           t_graph, t_graph, t_conv2d]


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    target = TARGETS[r.u8() % len(TARGETS)]
    with np.errstate(all="ignore"):
        try:
            target(r)
        except ACCEPTED:
            pass


def main(argv=None) -> None:
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris")
    # The C code has no coverage instrumentation: instrument this harness's own decoding and
    # dispatch so libFuzzer still gets feedback (which entry point, which array kinds and
    # which exception paths were reached).
    mod = sys.modules[__name__]
    for name, obj in list(vars(mod).items()):
        if callable(obj) and getattr(obj, "__module__", None) == __name__ and hasattr(obj, "__code__"):
            setattr(mod, name, atheris.instrument_func(obj))
    for name, obj in list(vars(Reader).items()):
        if hasattr(obj, "__code__"):
            setattr(Reader, name, atheris.instrument_func(obj))
    TARGETS[:] = [getattr(mod, t.__name__) for t in TARGETS]
    atheris.Setup(list(sys.argv if argv is None else argv), mod.TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
