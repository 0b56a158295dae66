"""Every C kernel, callable on its own with PyTorch-like NCHW signatures.

These exist so each layer can be compared with its torch counterpart and so
notebooks can poke at single layers.  Inputs are converted to C-contiguous
float32; feature maps are moved to the kernels' NHWC layout and back.

``isa`` selects the kernel path ("ref", "avx2", "avx512", "neon"; None = the
current default, see :func:`mobilevit.set_isa`); ``num_threads`` overrides
the global thread count for this call.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import _C
from .threads import threads_arg

_ISA = {"ref": _C.ISA_REF, "avx2": _C.ISA_AVX2, "avx512": _C.ISA_AVX512, "neon": _C.ISA_NEON}
_ACT = {None: _C.ACT_NONE, "none": _C.ACT_NONE, "silu": _C.ACT_SILU, "swish": _C.ACT_SILU,
        "relu": _C.ACT_RELU}


def _isa(isa: Optional[str]) -> int:
    if isa is None:
        return -1
    try:
        return _ISA[isa]
    except KeyError:
        raise ValueError(f"unknown ISA {isa!r}; choose one of {sorted(_ISA)}") from None


def _act(act) -> int:
    try:
        return _ACT[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; choose one of none, silu, relu") from None


def _f32(x, name: str, ndim: Optional[int] = None) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    return a


def _nhwc(x, name="x") -> np.ndarray:
    return np.ascontiguousarray(_f32(x, name, 4).transpose(0, 2, 3, 1))


def _nchw(y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _opt(x, name):
    return None if x is None else _f32(x, name)


def _nt(num_threads):
    """None: the module setting; else validated like set_num_threads."""
    return threads_arg(num_threads)


_ALGOS = {None: 0, "auto": 0, "direct": 1, "winograd": 2, "winograd4": 3}


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, act=None,
           x2=None, residual=None, isa=None, num_threads=None, algorithm=None):
    """torch.nn.functional.conv2d (+ optional fused activation and residual).

    ``groups`` may be 1 (dense) or equal to the channel count with a 3x3
    kernel (depthwise).  ``x2`` is concatenated to ``x`` along channels
    before the convolution without being materialised.  ``algorithm``:
    "auto" (as the model graphs run it: Winograd for 3x3 / stride 1 /
    padding 1 convs with >= 16 input and output channels, F(4x4, 3x3) on
    maps of at least 16x16 and F(2x2, 3x3) on smaller ones; implicit GEMM
    otherwise), "direct", "winograd" (F(2x2, 3x3)) or "winograd4"
    (F(4x4, 3x3)).
    """
    if algorithm not in _ALGOS:
        raise ValueError(f"conv2d: algorithm must be one of auto, direct, winograd, winograd4, not {algorithm!r}")
    w = _f32(weight, "weight", 4)
    if groups != 1:
        xc = np.asarray(x).shape[1]
        if groups != xc or w.shape[1:] != (1, 3, 3) or w.shape[0] != xc:
            raise ValueError("conv2d: only groups=1 or depthwise 3x3 (groups == channels) are supported")
        if x2 is not None or residual is not None:
            raise ValueError("conv2d: x2/residual are not supported for depthwise")
        y = _C.dwconv2d(_nhwc(x), w, _opt(bias, "bias"), int(stride), int(padding), int(dilation),
                        _act(act), _isa(isa), _nt(num_threads))
        return _nchw(y)
    y = _C.conv2d(_nhwc(x), w, _opt(bias, "bias"), int(stride), int(padding), int(dilation), _act(act),
                  None if x2 is None else _nhwc(x2, "x2"),
                  None if residual is None else _nhwc(residual, "residual"), _isa(isa), _nt(num_threads),
                  _ALGOS[algorithm])
    return _nchw(y)


def depthwise_conv2d(x, weight, bias=None, stride=1, padding=1, dilation=1, act=None, isa=None,
                     num_threads=None):
    """Depthwise 3x3 convolution: conv2d(groups=channels)."""
    w = _f32(weight, "weight", 4)
    return _nchw(_C.dwconv2d(_nhwc(x), w, _opt(bias, "bias"), int(stride), int(padding), int(dilation),
                             _act(act), _isa(isa), _nt(num_threads)))


def linear(x, weight, bias=None, act=None, residual=None, isa=None, num_threads=None):
    """torch.nn.functional.linear over the last axis (any leading shape)."""
    x = _f32(x, "x")
    w = _f32(weight, "weight", 2)
    lead = x.shape[:-1]
    a = x.reshape(-1, x.shape[-1])
    r = None if residual is None else _f32(residual, "residual").reshape(-1, w.shape[0])
    y = _C.gemm(a, w, _opt(bias, "bias"), r, _act(act), _isa(isa), _nt(num_threads))
    return y.reshape(*lead, w.shape[0])


def conv1x1(x, weight, bias=None, act=None, residual=None, isa=None, num_threads=None):
    """1x1 convolution (NCHW), computed as a GEMM over pixels."""
    w = _f32(weight, "weight")
    w = w.reshape(w.shape[0], -1)
    xn = _nhwc(x)
    B, H, W, C = xn.shape
    r = None if residual is None else _nhwc(residual, "residual").reshape(-1, w.shape[0])
    y = _C.gemm(xn.reshape(-1, C), w, _opt(bias, "bias"), r, _act(act), _isa(isa), _nt(num_threads))
    return _nchw(y.reshape(B, H, W, w.shape[0]))


def batch_norm(x, running_mean, running_var, weight, bias, eps=1e-5, num_threads=None):
    """Inference BatchNorm2d on NCHW (the unfolded op; models fold it)."""
    xn = _nhwc(x)
    B, H, W, C = xn.shape
    y = _C.batchnorm(xn.reshape(-1, C), _f32(running_mean, "running_mean"), _f32(running_var, "running_var"),
                     _f32(weight, "weight"), _f32(bias, "bias"), float(eps), _nt(num_threads))
    return _nchw(y.reshape(B, H, W, C))


def silu(x, isa=None, num_threads=None):
    """x * sigmoid(x), element-wise."""
    return _C.act(_f32(x, "x"), _C.ACT_SILU, _isa(isa), _nt(num_threads))


def relu(x, isa=None, num_threads=None):
    """max(x, 0), element-wise."""
    return _C.act(_f32(x, "x"), _C.ACT_RELU, _isa(isa), _nt(num_threads))


def layer_norm(x, weight, bias, eps=1e-5, isa=None, num_threads=None):
    """torch.nn.functional.layer_norm over the last axis."""
    x = _f32(x, "x")
    y = _C.layernorm(x.reshape(-1, x.shape[-1]), _f32(weight, "weight"), _f32(bias, "bias"), float(eps),
                     _isa(isa), _nt(num_threads))
    return y.reshape(x.shape)


def group_norm1(x, weight, bias, eps=1e-5, isa=None, num_threads=None):
    """torch.nn.GroupNorm(1, C) on NCHW (MobileViTv2's LayerNorm2d)."""
    return _nchw(_C.groupnorm1(_nhwc(x), _f32(weight, "weight"), _f32(bias, "bias"), float(eps),
                               _isa(isa), _nt(num_threads)))


def multi_head_attention(qkv, num_heads, scale=None, isa=None, num_threads=None):
    """Scaled dot-product attention without projections.

    ``qkv``: [S, N, 3*D] (rows [q | k | v], heads major inside each) as the
    fused ``qkv`` linear of timm/ml-cvnets produces.  Returns [S, N, D] =
    softmax(q k^T * scale) v per sequence and head; ``scale`` defaults to
    head_dim ** -0.5.
    """
    q = _f32(qkv, "qkv", 3)
    S, N, C3 = q.shape
    if C3 % 3 or (C3 // 3) % num_heads:
        raise ValueError(f"qkv: last axis {C3} is not 3 x num_heads({num_heads}) x head_dim")
    d = C3 // 3
    if scale is None:
        scale = (d // num_heads) ** -0.5
    y = _C.attention(q.reshape(S, 1, N, C3), int(num_heads), 1, 1, float(scale), _isa(isa), _nt(num_threads))
    return y.reshape(S, N, d)


def patch_attention(qkv, num_heads, patch_size=2, scale=None, isa=None, num_threads=None):
    """MobileViT attention straight on a feature map, with the unfold folded
    into the kernel's addressing: ``qkv`` NCHW [B, 3D, H, W] -> [B, D, H, W];
    equal to fold(attention(unfold(qkv)))."""
    q = _nhwc(qkv, "qkv")
    d = q.shape[3] // 3
    if scale is None:
        scale = (d // num_heads) ** -0.5
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return _nchw(_C.attention(q, int(num_heads), int(ph), int(pw), float(scale), _isa(isa), _nt(num_threads)))


def unfold(x, patch_size=2, num_threads=None):
    """MobileViT unfolding: NCHW [B, C, H, W] -> tokens [B*P, N, C]."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return _C.unfold(_nhwc(x), int(ph), int(pw), _nt(num_threads))


def fold(tokens, batch, height, width, patch_size=2, num_threads=None):
    """Inverse of :func:`unfold`: tokens [B*P, N, C] -> NCHW [B, C, H, W]."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return _nchw(_C.fold(_f32(tokens, "tokens", 3), int(batch), int(height), int(width), int(ph), int(pw),
                         _nt(num_threads)))


def _out_size(size, name="size"):
    oh, ow = (size, size) if isinstance(size, (int, np.integer)) else size
    oh, ow = int(oh), int(ow)
    if not (1 <= oh < 2 ** 31 and 1 <= ow < 2 ** 31):
        raise ValueError(f"{name} must be two ints in 1..2**31-1, got {(oh, ow)}")
    return oh, ow


def interpolate_bilinear(x, size, align_corners=False, num_threads=None):
    """F.interpolate(x, size=size, mode='bilinear', align_corners=...) on NCHW."""
    oh, ow = _out_size(size)
    return _nchw(_C.resize_bilinear(_nhwc(x), oh, ow, bool(align_corners), _nt(num_threads)))


def interpolate_bilinear_argmax(x, size, align_corners=False, num_threads=None):
    """``torch.argmax(F.interpolate(x, size, mode='bilinear', align_corners=...), dim=1)``
    on NCHW logits, fused: int64 [B, OH, OW] labels without the float
    [B, C, OH, OW] tensor (8 bytes per output pixel instead of 4 * C).  The
    first maximum wins; a NaN counts as the maximum, as in torch."""
    oh, ow = _out_size(size)
    return _C.resize_argmax(_nhwc(x), oh, ow, bool(align_corners), _nt(num_threads))


def global_avg_pool(x, num_threads=None):
    """Mean over H and W: NCHW [B, C, H, W] -> [B, C]."""
    return _C.global_avg_pool(_nhwc(x), _nt(num_threads))


def concat(a, b, num_threads=None):
    """torch.cat([a, b], dim=1) on NCHW."""
    an, bn = _nhwc(a, "a"), _nhwc(b, "b")
    if an.shape[:3] != bn.shape[:3]:
        raise ValueError(f"concat: shapes {np.shape(a)} and {np.shape(b)} differ outside the channel axis")
    B, H, W, _ = an.shape
    y = _C.concat(an.reshape(B * H * W, -1), bn.reshape(B * H * W, -1), _nt(num_threads))
    return _nchw(y.reshape(B, H, W, -1))


def add(a, b, num_threads=None):
    """Element-wise a + b (residual add)."""
    return _C.add(_f32(a, "a"), _f32(b, "b"), _nt(num_threads))


def fold_batchnorm(weight, running_mean, running_var, gamma, beta, eps=1e-5, bias=None):
    """Fold inference BatchNorm into the preceding conv: returns (w', b').

    w' = w * gamma / sqrt(var + eps) per output channel,
    b' = (b - mean) * gamma / sqrt(var + eps) + beta.  Done in float64.
    """
    w = np.asarray(weight, dtype=np.float64)
    s = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(running_var, np.float64) + eps)
    b0 = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
    wf = w * s.reshape(-1, *([1] * (w.ndim - 1)))
    bf = (b0 - np.asarray(running_mean, np.float64)) * s + np.asarray(beta, np.float64)
    return wf.astype(np.float32), bf.astype(np.float32)


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "math", "np", "Optional")]


def separable_attention(qkv, patch_size=2, isa=None, num_threads=None):
    """MobileViTv2 separable self-attention between qkv_proj and out_proj, on
    a feature map: ``qkv`` NCHW [B, 1 + 2D, H, W] -> [B, D, H, W].  Per 2x2
    polyphase sequence: s = softmax_n(q), c = sum_n s_n k_n, out = relu(v) * c
    (equal to timm's LinearSelfAttention on the unfolded [B, D, P, N] map)."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return _nchw(_C.sep_attention(_nhwc(qkv, "qkv"), int(ph), int(pw), _isa(isa), _nt(num_threads)))


def crop_pad(x, size, num_threads=None):
    """Top-left anchored crop or zero-pad of an NCHW map to ``size`` (h, w)."""
    oh, ow = (size, size) if isinstance(size, int) else size
    return _nchw(_C.crop_pad(_nhwc(x), int(oh), int(ow), _nt(num_threads)))


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "math", "np", "Optional")]
