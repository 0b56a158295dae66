"""MobileViT v1 / v2 / DeepLabv3 models: parameters under timm's names, a
graph of fused C nodes built from them, and the user-facing model object.

The network is described once, in :class:`_Network`, as a list
of coarse nodes (conv with folded BatchNorm + activation + residual,
depthwise conv, LayerNorm, attention on patch-grouped pixels, resize, pool).
The C core packs the weights once and plans activations per input shape.
"""
from __future__ import annotations

import math
import operator
import os
import threading
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import _C
from .config import MobileViTConfig, get_config, make_divisible
from .keymap import to_numpy, to_timm
from .ops import fold_batchnorm
from .threads import MAX_THREADS, check_num_threads, threads_arg as _threads_arg  # noqa: F401

ACT_NONE, ACT_SILU, ACT_RELU = _C.ACT_NONE, _C.ACT_SILU, _C.ACT_RELU

MIN_SIDE = 32

def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


# Activation memory a single forward pass may plan before MemoryError is
# raised (per model; change with MobileViT.set_memory_limit or
# mobilevit.set_default_memory_limit).  Default: 75 % of physical memory.
_DEFAULT_MAX_BYTES = int(0.75 * _physical_memory())


def set_default_memory_limit(max_bytes: Optional[int]) -> None:
    """Cap on activation bytes for models created afterwards (None: no cap)."""
    global _DEFAULT_MAX_BYTES
    _DEFAULT_MAX_BYTES = int(max_bytes or 0)


class StateDictError(ValueError):
    """Missing, unexpected or mis-shaped parameters; ``.missing``,
    ``.unexpected`` and ``.mismatched`` hold the details."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


class LoadResult:
    """What :meth:`MobileViT.load_state_dict` did (like torch's
    ``_IncompatibleKeys``)."""

    def __init__(self, missing, unexpected, mismatched, scheme, ignored=()):
        self.missing_keys = list(missing)
        self.unexpected_keys = list(unexpected)
        self.mismatched_keys = list(mismatched)
        self.scheme = scheme
        #: training-only tensors recognised by name and shape and left out (ml-cvnets' aux head;
        #: see :func:`training_only_shapes`), in timm-style names
        self.ignored_keys = list(ignored)

    def __repr__(self):
        return (f"LoadResult(scheme={self.scheme!r}, missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys}, mismatched_keys={self.mismatched_keys}, "
                f"ignored_keys={self.ignored_keys})")


def _bn_names(prefix: str, c: int):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,)}


def _ffn_dim(cfg: MobileViTConfig, d: int, mlp_ratio: float) -> int:
    return int(d * mlp_ratio) if cfg.version == 1 else int((d * mlp_ratio) // 16 * 16)


def stage_dilations(cfg: MobileViTConfig):
    """(MV2 stride, MV2 depthwise dilation, block local-conv dilation) for
    layers 3-5, following HF's encoder (and ml-cvnets'): output stride 16
    makes layer 5's MV2 stride 1; 8 also layer 4's, with layer 5's depthwise
    conv dilated by 2.  The v1 block conv is never dilated; the v2 one only
    in ml-cvnets segmentation models (``dilate_block_conv``)."""
    dil4 = 2 if cfg.output_stride == 8 else 1
    dil5 = dil4 * 2 if cfg.output_stride in (8, 16) else dil4
    out = [(2, 1, 1)]
    for d in (dil4, dil5):
        stride = 2 if d == 1 else 1
        dw_dil = d // 2 if d > 1 else 1
        block = d if (cfg.version == 2 and cfg.dilate_block_conv) else 1
        out.append((stride, dw_dil, block))
    return out


def parameter_shapes(cfg: MobileViTConfig) -> Dict[str, Tuple[int, ...]]:
    """Every tensor the model needs (timm names, BN buffers included, no
    ``num_batches_tracked``) with its shape, in network order.  Segmentation
    heads live under ``seg_head.``."""
    s: Dict[str, Tuple[int, ...]] = {}
    s["stem.conv.weight"] = (cfg.stem_channels, cfg.in_channels, 3, 3)
    s.update(_bn_names("stem.bn", cfg.stem_channels))
    cin = cfg.stem_channels

    def conv_bn(prefix, cout, cin_g, k):
        s[f"{prefix}.conv.weight"] = (cout, cin_g, k, k)
        s.update(_bn_names(f"{prefix}.bn", cout))

    def mv2(prefix, cin, cout):
        hid = make_divisible(cin * cfg.expansion, 8)
        conv_bn(f"{prefix}.conv1_1x1", hid, cin, 1)
        conv_bn(f"{prefix}.conv2_kxk", hid, 1, 3)
        conv_bn(f"{prefix}.conv3_1x1", cout, hid, 1)

    for si, outs in enumerate((cfg.layer1, cfg.layer2)):
        for j, c in enumerate(outs):
            mv2(f"stages.{si}.{j}", cin, c)
            cin = c
    for bi, b in enumerate(cfg.blocks):
        si = bi + 2
        mv2(f"stages.{si}.0", cin, b.channels)
        p = f"stages.{si}.1"
        C, d, f = b.channels, b.dim, _ffn_dim(cfg, b.dim, b.mlp_ratio)
        conv_bn(f"{p}.conv_kxk", C, C if cfg.version == 1 else 1, 3)
        s[f"{p}.conv_1x1.weight"] = (d, C, 1, 1)
        for l in range(b.depth):
            t = f"{p}.transformer.{l}"
            s[f"{t}.norm1.weight"] = (d,)
            s[f"{t}.norm1.bias"] = (d,)
            if cfg.version == 1:
                s[f"{t}.attn.qkv.weight"] = (3 * d, d)
                s[f"{t}.attn.qkv.bias"] = (3 * d,)
                s[f"{t}.attn.proj.weight"] = (d, d)
                s[f"{t}.attn.proj.bias"] = (d,)
            else:
                s[f"{t}.attn.qkv_proj.weight"] = (1 + 2 * d, d, 1, 1)
                s[f"{t}.attn.qkv_proj.bias"] = (1 + 2 * d,)
                s[f"{t}.attn.out_proj.weight"] = (d, d, 1, 1)
                s[f"{t}.attn.out_proj.bias"] = (d,)
            s[f"{t}.norm2.weight"] = (d,)
            s[f"{t}.norm2.bias"] = (d,)
            tail = () if cfg.version == 1 else (1, 1)
            s[f"{t}.mlp.fc1.weight"] = (f, d) + tail
            s[f"{t}.mlp.fc1.bias"] = (f,)
            s[f"{t}.mlp.fc2.weight"] = (d, f) + tail
            s[f"{t}.mlp.fc2.bias"] = (d,)
        s[f"{p}.norm.weight"] = (d,)
        s[f"{p}.norm.bias"] = (d,)
        conv_bn(f"{p}.conv_proj", C, d, 1)
        if cfg.version == 1:
            conv_bn(f"{p}.conv_fusion", C, 2 * C, 3)
        cin = C
    if cfg.head == "deeplabv3":
        a = cfg.aspp_channels
        conv_bn("seg_head.aspp.convs.0", a, cin, 1)
        for i in range(3):
            conv_bn(f"seg_head.aspp.convs.{i + 1}", a, cin, 3)
        conv_bn("seg_head.aspp.convs.4", a, cin, 1)
        conv_bn("seg_head.aspp.project", a, 5 * a, 1)
        s["seg_head.classifier.weight"] = (cfg.num_classes, a, 1, 1)
        s["seg_head.classifier.bias"] = (cfg.num_classes,)
        return s
    if cfg.final_channels:
        conv_bn("final_conv", cfg.final_channels, cin, 1)
        cin = cfg.final_channels
    if cfg.num_classes > 0:
        s["head.fc.weight"] = (cfg.num_classes, cin)
        s["head.fc.bias"] = (cfg.num_classes,)
    return s


def training_only_shapes(cfg: MobileViTConfig) -> Dict[str, Tuple[int, ...]]:
    """Tensors a checkpoint may carry that inference never uses, with the shapes they must have
    (timm-style names, see :mod:`mobilevit.keymap`).  ml-cvnets' DeepLabv3 with ``use_aux_head``
    (its v0.2+ segmentation recipes) trains an auxiliary head on layer 4 — conv 3x3 (C4 ->
    max(C4 // 4, 128)) + BN + ReLU, dropout, conv 1x1 with bias to the classes — that its
    ``forward`` runs only in training mode.  :meth:`MobileViT.load_state_dict` ignores exactly
    these tensors (and reports them as ``ignored_keys``); any other name under
    ``seg_head.aux_head.`` or a wrong shape is an error like any unknown key."""
    if cfg.head != "deeplabv3":
        return {}
    c4 = cfg.blocks[1].channels
    inner = max(c4 // 4, 128)
    s: Dict[str, Tuple[int, ...]] = {"seg_head.aux_head.0.conv.weight": (inner, c4, 3, 3)}
    s.update(_bn_names("seg_head.aux_head.0.bn", inner))
    s["seg_head.aux_head.2.weight"] = (cfg.num_classes, inner, 1, 1)
    s["seg_head.aux_head.2.bias"] = (cfg.num_classes,)
    return s


def _is_buffer(name: str) -> bool:
    return name.endswith("running_mean") or name.endswith("running_var")


class _GraphBuilder:
    """Collects graph nodes as named fields (the C node tables: ``_C.OPS``,
    ``_C.OP_FIELDS``); tensor 0 is the input, node i makes tensor i+1."""

    FAMILIES = {"conv": "conv", "dwconv": "depthwise 3x3", "layernorm": "layernorm", "attention": "attention",
                "resize": "resize", "global_avg_pool": "pool", "groupnorm1": "groupnorm", "concat": "concat",
                "sep_attention": "separable attention", "crop_pad": "crop/pad"}

    def __init__(self):
        self.nodes: List[dict] = []
        self.tags: List[str] = []     # op family of each node, for profiles
        self.tag: Optional[str] = None

    def _add(self, op: str, inputs, cout: int = 0, weight=None, bias=None, gamma=None, **params) -> int:
        assert set(params) == set(_C.OP_FIELDS[op]), (op, sorted(params))
        self.nodes.append(dict(op=op, inputs=tuple(inputs), cout=int(cout), weight=weight, bias=bias, gamma=gamma,
                               **params))
        fam = self.FAMILIES.get(op, op)
        if op == "conv":
            fam = f"conv {params['kh']}x{params['kw']}" + (" (fusion, 2 inputs)" if params["concat"] else "")
        self.tags.append(self.tag or fam)
        return len(self.nodes)

    def conv(self, x, w, b, k, stride=1, act=ACT_NONE, x2=None, residual=None, dil=1):
        pad = (k - 1) // 2 * dil
        ins = [x] + ([x2] if x2 is not None else []) + ([residual] if residual is not None else [])
        return self._add("conv", ins, w.shape[0], w, b, kh=k, kw=k, stride=stride, pad=pad, dilation=dil, act=act,
                         concat=int(x2 is not None), residual=int(residual is not None))

    def dwconv(self, x, w, b, stride=1, act=ACT_NONE, dil=1):
        return self._add("dwconv", [x], w.shape[0], w, b, stride=stride, pad=dil, dilation=dil, act=act)

    def layernorm(self, x, g, b, eps):
        return self._add("layernorm", [x], g.shape[0], bias=b, gamma=g, eps=eps)

    def attention(self, qkv, d, heads, patch):
        return self._add("attention", [qkv], d, heads=heads, patch_h=patch, patch_w=patch,
                         scale=(d // heads) ** -0.5)

    def resize_to_multiple(self, x, c, multiple, align_corners=False):
        return self._add("resize", [x], c, like=0, multiple_h=multiple, multiple_w=multiple,
                         align_corners=int(align_corners))

    def resize_like(self, x, like, c, align_corners=False):
        return self._add("resize", [x, like], c, like=1, multiple_h=1, multiple_w=1,
                         align_corners=int(align_corners))

    def global_avg_pool(self, x, c):
        return self._add("global_avg_pool", [x], c)

    def groupnorm(self, x, g, b, eps):
        return self._add("groupnorm1", [x], g.shape[0], bias=b, gamma=g, eps=eps)

    def sep_attention(self, qkv, d, patch):
        return self._add("sep_attention", [qkv], d, patch_h=patch, patch_w=patch)

    def crop_to_multiple(self, x, c, multiple):
        return self._add("crop_pad", [x], c, like=0, multiple_h=multiple, multiple_w=multiple)

    def pad_like(self, x, like, c):
        return self._add("crop_pad", [x, like], c, like=1, multiple_h=1, multiple_w=1)

    def concat(self, a, b):
        return self._add("concat", [a, b])


class _Network:
    """The network described once: the C graph built from one parameter
    dict, with the tensor ids of its stages and outputs.  Immutable once
    built, so a forward pass that holds one sees one consistent network
    while :meth:`MobileViT.load_state_dict` installs the next."""

    def __init__(self, cfg: MobileViTConfig, params: Mapping[str, np.ndarray], settings=(None, None, 0)):
        self.cfg, self.params = cfg, params
        self._build(settings)

    def _folded(self, prefix: str, bias_prefix: Optional[str] = None):
        p = self.params
        return fold_batchnorm(p[f"{prefix}.conv.weight"], p[f"{prefix}.bn.running_mean"],
                              p[f"{prefix}.bn.running_var"], p[f"{prefix}.bn.weight"], p[f"{prefix}.bn.bias"],
                              self.cfg.bn_eps)

    def _build(self, settings):
        cfg, p, g = self.cfg, self.params, _GraphBuilder()
        w, b = self._folded("stem")
        x = g.conv(0, w, b, 3, stride=2, act=ACT_SILU)
        self.stage_ids = []
        cin = cfg.stem_channels

        def mv2(prefix, x, cin, cout, stride, dw_dil=1):
            w1, b1 = self._folded(f"{prefix}.conv1_1x1")
            w2, b2 = self._folded(f"{prefix}.conv2_kxk")
            w3, b3 = self._folded(f"{prefix}.conv3_1x1")
            h = g.conv(x, w1, b1, 1, act=ACT_SILU)
            h = g.dwconv(h, w2, b2, stride=stride, act=ACT_SILU, dil=dw_dil)
            return g.conv(h, w3, b3, 1, residual=x if (stride == 1 and cin == cout) else None)

        for si, outs in enumerate((cfg.layer1, cfg.layer2)):
            for j, c in enumerate(outs):
                x = mv2(f"stages.{si}.{j}", x, cin, c, 2 if (si == 1 and j == 0) else 1)
                cin = c
            self.stage_ids.append(x)
        for bi, (blk, (stride, dw_dil, blk_dil)) in enumerate(zip(cfg.blocks, stage_dilations(cfg))):
            pre = f"stages.{bi + 2}.1"
            x = mv2(f"stages.{bi + 2}.0", x, cin, blk.channels, stride, dw_dil)
            if cfg.version == 1:
                x = self._v1_block(g, pre, blk, x)
            else:
                x = self._v2_block(g, pre, blk, x, blk_dil)
            cin = blk.channels
            self.stage_ids.append(x)
        self.final_id = x
        self.logits_id = None
        self.pool_id = x
        self.feature_ids = list(self.stage_ids)
        if cfg.head == "none":
            if cfg.final_channels:       # timm's features_only ends with final_conv
                wfc, bfc = self._folded("final_conv")
                self.final_id = g.conv(x, wfc, bfc, 1, act=ACT_SILU)
                self.feature_ids[4] = self.final_id
        elif cfg.head == "deeplabv3":
            self.logits_id = self._deeplab_head(g, x, cin)
            self.pool_id = self.logits_id
        else:
            if cfg.final_channels:
                wfc, bfc = self._folded("final_conv")
                x = g.conv(x, wfc, bfc, 1, act=ACT_SILU)
                cin = cfg.final_channels
            self.final_id = x
            x = g.global_avg_pool(x, cin)
            self.pool_id = x
            if cfg.num_classes > 0:
                self.logits_id = g.conv(x, p["head.fc.weight"], p["head.fc.bias"], 1)
        self.graph = _C.Graph(cfg.in_channels, g.nodes)
        self.num_nodes = len(g.nodes)
        self.tags = tuple(g.tags)
        fusion, winograd, max_bytes = settings
        if fusion is not None:
            self.graph.set_fusion(fusion)
        if winograd is not None:
            self.graph.set_winograd(winograd)
        if max_bytes:
            self.graph.set_max_bytes(max_bytes)

    def _transformer(self, g, pre, blk, t, norm, names, attention):
        """Pre-norm transformer layers + final norm on the pixel rows of t:
        t += proj(attention(qkv(norm1(t)))); t += fc2(silu(fc1(norm2(t)))).
        v1: LayerNorm and multi-head attention; v2: GroupNorm(1) and
        separable attention (``names`` = the qkv / output projection names)."""
        p, eps = self.params, self.cfg.ln_eps
        qkv_name, out_name = names
        for l in range(blk.depth):
            q = f"{pre}.transformer.{l}"
            a = norm(t, p[f"{q}.norm1.weight"], p[f"{q}.norm1.bias"], eps)
            g.tag = "transformer linear"
            qkv = g.conv(a, p[f"{q}.attn.{qkv_name}.weight"], p[f"{q}.attn.{qkv_name}.bias"], 1)
            g.tag = None
            o = attention(qkv)
            g.tag = "transformer linear"
            t = g.conv(o, p[f"{q}.attn.{out_name}.weight"], p[f"{q}.attn.{out_name}.bias"], 1, residual=t)
            g.tag = None
            a = norm(t, p[f"{q}.norm2.weight"], p[f"{q}.norm2.bias"], eps)
            g.tag = "transformer linear"
            h = g.conv(a, p[f"{q}.mlp.fc1.weight"], p[f"{q}.mlp.fc1.bias"], 1, act=ACT_SILU)
            t = g.conv(h, p[f"{q}.mlp.fc2.weight"], p[f"{q}.mlp.fc2.bias"], 1, residual=t)
            g.tag = None
        return norm(t, p[f"{pre}.norm.weight"], p[f"{pre}.norm.bias"], eps)

    def _v1_block(self, g, pre, blk, x):
        """MobileViT block: local 3x3 + 1x1, transformer on 2x2-patch
        sequences (attention addresses them in place), fold, 1x1 projection,
        3x3 fusion of cat([x, proj])."""
        p, d = self.params, blk.dim
        wk, bk = self._folded(f"{pre}.conv_kxk")
        loc = g.conv(x, wk, bk, 3, act=ACT_SILU)
        t0 = g.conv(loc, p[f"{pre}.conv_1x1.weight"], None, 1)
        # odd maps: bilinear to an even size and back (all references do this)
        t = g.resize_to_multiple(t0, d, blk.patch_size)
        t = self._transformer(g, pre, blk, t, g.layernorm, ("qkv", "proj"),
                              lambda qkv: g.attention(qkv, d, blk.heads, blk.patch_size))
        t = g.resize_like(t, t0, d)
        wp, bp = self._folded(f"{pre}.conv_proj")
        proj = g.conv(t, wp, bp, 1, act=ACT_SILU)
        wf, bf = self._folded(f"{pre}.conv_fusion")
        return g.conv(x, wf, bf, 3, act=ACT_SILU, x2=proj)   # cat([x, proj]) then 3x3

    def _v2_block(self, g, pre, blk, x, dil):
        """MobileViTv2 block: depthwise local conv + 1x1, separable-attention
        transformer with GroupNorm(1), 1x1 projection (no fusion)."""
        p, d, C = self.params, blk.dim, blk.channels
        if self.cfg.odd_size == "resize":
            x = g.resize_to_multiple(x, C, blk.patch_size, align_corners=True)
        wk, bk = self._folded(f"{pre}.conv_kxk")
        loc = g.dwconv(x, wk, bk, act=ACT_SILU, dil=dil)
        t0 = g.conv(loc, p[f"{pre}.conv_1x1.weight"], None, 1)
        t = t0 if self.cfg.odd_size == "resize" else g.crop_to_multiple(t0, d, blk.patch_size)
        t = self._transformer(g, pre, blk, t, g.groupnorm, ("qkv_proj", "out_proj"),
                              lambda qkv: g.sep_attention(qkv, d, blk.patch_size))
        if self.cfg.odd_size != "resize":
            t = g.pad_like(t, t0, d)
        wp, bp = self._folded(f"{pre}.conv_proj")
        return g.conv(t, wp, bp, 1)

    def _deeplab_head(self, g, x, cin):
        """DeepLabv3: ASPP (1x1, three atrous 3x3, image pooling; BN + ReLU),
        concat, 1x1 projection (BN + ReLU), 1x1 classifier with bias.  Logits
        at the backbone's output stride, like HF."""
        cfg, p, a = self.cfg, self.params, self.cfg.aspp_channels
        g.tag = "aspp"
        w, b = self._folded("seg_head.aspp.convs.0")
        branches = [g.conv(x, w, b, 1, act=ACT_RELU)]
        for i, rate in enumerate(cfg.aspp_rates):
            w, b = self._folded(f"seg_head.aspp.convs.{i + 1}")
            branches.append(g.conv(x, w, b, 3, act=ACT_RELU, dil=rate))
        pooled = g.global_avg_pool(x, cin)
        w, b = self._folded("seg_head.aspp.convs.4")
        pb = g.conv(pooled, w, b, 1, act=ACT_RELU)
        branches.append(g.resize_like(pb, x, a))           # 1x1 -> HxW: a broadcast
        cat = branches[0]
        for br in branches[1:]:
            cat = g.concat(cat, br)
        w, b = self._folded("seg_head.aspp.project")
        y = g.conv(cat, w, b, 1, act=ACT_RELU)
        g.tag = None
        return g.conv(y, p["seg_head.classifier.weight"], p["seg_head.classifier.bias"], 1)


class _State(NamedTuple):
    """What a call reads, swapped as one reference: the parameters and the
    network built from them (None until first needed)."""
    params: Dict[str, np.ndarray]
    net: Optional[_Network]


class MobileViT:
    """A MobileViT network (v1 XXS / XS / S, MobileViTv2, DeepLabv3 on
    either, or a features-only backbone) running on the C core.

    Parameters live in ``self.params`` under timm's names (float32 numpy
    arrays the model owns, BatchNorm unfolded); the C graph is rebuilt from
    them whenever they change.  Inputs are float32 NCHW arrays of any
    H, W >= :attr:`min_input_size`.

    Thread safety: any number of threads may call the model while others
    call ``load_state_dict``, ``set_memory_limit`` or a setter of the
    graph: every call runs on one consistent state, the old or the new.
    """

    def __init__(self, cfg: MobileViTConfig, params: Optional[Mapping[str, np.ndarray]] = None,
                 seed: Optional[int] = 0, build: bool = True):
        self.cfg = cfg
        self.shapes = parameter_shapes(cfg)
        self.class_names: Optional[List[str]] = None
        self.pretrained_cfg: dict = {}
        self.features_only = False
        self.out_indices: Tuple[int, ...] = (0, 1, 2, 3, 4)
        self._max_bytes = _DEFAULT_MAX_BYTES
        self._lock = threading.Lock()       # serialises building and swapping _state
        self._state = _State({}, None)
        if params is None:
            params = self._init_params(seed)
        self._set_params(params, build)

    @property
    def params(self) -> Dict[str, np.ndarray]:
        """The parameters under timm's names (do not modify in place: use
        :meth:`load_state_dict`)."""
        return self._state.params

    # ---- parameters ---------------------------------------------------------
    def _init_params(self, seed) -> Dict[str, np.ndarray]:
        """Random weights (He-like scale), BN at identity: a usable untrained
        network, not a pretrained one."""
        rng = np.random.default_rng(seed)
        p = {}
        for k, shp in self.shapes.items():
            if k.endswith("running_var") or (k.endswith(".weight") and len(shp) == 1):
                p[k] = np.ones(shp, np.float32)
            elif k.endswith("running_mean") or k.endswith(".bias"):
                p[k] = np.zeros(shp, np.float32)
            else:
                fan_in = int(np.prod(shp[1:]))
                p[k] = (rng.standard_normal(shp) * math.sqrt(1.0 / fan_in)).astype(np.float32)
        return p

    def _set_params(self, params: Mapping[str, np.ndarray], build: bool = True):
        # private copies: nothing the caller (or a file mapping) holds can change them later
        new = {k: np.array(params[k], dtype=np.float32, order="C", copy=True) for k in self.shapes}
        with self._lock:
            self._state = _State(new, self._compile(new) if build else None)

    def _settings(self):
        """Graph settings a rebuilt network inherits from the current one
        (or the ones set before any network was built)."""
        net = self._state.net
        pending = getattr(self, "_pending", {})
        if net is None:
            return (pending.get("fusion"), pending.get("winograd"), self._max_bytes)
        return (net.graph.get_fusion(), net.graph.get_winograd(), self._max_bytes)

    def _set_graph_option(self, name, value):
        with self._lock:
            net = self._state.net
            if net is None:
                if not hasattr(self, "_pending"):
                    self._pending = {}
                self._pending[name] = value
            elif name == "fusion":
                net.graph.set_fusion(value)
            else:
                net.graph.set_winograd(value)

    def set_fusion(self, min_bytes: Optional[int]) -> None:
        """Run expand -> depthwise -> project chains as one fused block when
        the expanded map has at least ``min_bytes`` per image (None: the
        default, ``mobilevit.testing.FUSE_MIN_BYTES``; -1: never).  Results
        are bit-identical either way; only speed and memory change."""
        if min_bytes is None:
            min_bytes = _C.FUSE_MIN_BYTES
        if isinstance(min_bytes, bool) or not isinstance(min_bytes, (int, np.integer)) or min_bytes < -1:
            raise ValueError(f"min_bytes must be an int >= 0, -1 (never) or None (default), got {min_bytes!r}")
        self._set_graph_option("fusion", int(min_bytes))

    def set_winograd(self, on: bool = True) -> None:
        """Run eligible 3x3 convs (stride 1, >= 16 channels) by Winograd
        (default: F(4x4, 3x3) on maps of at least 8x8, F(2x2, 3x3) on smaller
        ones) or by implicit GEMM; the logits agree to ~1e-6."""
        self._set_graph_option("winograd", bool(on))

    def _compile(self, params) -> _Network:
        return _Network(self.cfg, params, self._settings())

    def _ensure_net(self) -> _Network:
        net = self._state.net
        if net is not None:
            return net
        with self._lock:
            st = self._state
            if st.net is None:
                st = _State(st.params, self._compile(st.params))
                self._state = st
            return st.net

    def load_state_dict(self, state_dict: Mapping[str, object], strict: bool = True,
                        scheme: Optional[str] = None) -> LoadResult:
        """Load weights named by timm, HF transformers or ml-cvnets (detected
        from the keys, or forced with ``scheme``).  Values may be numpy arrays
        or torch tensors.  Strict by default: any missing, unexpected or
        mis-shaped tensor raises :class:`StateDictError` and nothing changes.
        With ``strict=False`` the matching tensors are loaded and the rest is
        reported in the returned :class:`LoadResult`."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
        renamed, scheme = to_timm(state_dict, scheme, partial=not strict)
        missing, mismatched, new = [], [], {}
        for k, shp in self.shapes.items():
            if k not in renamed:
                missing.append(k)
                continue
            v = to_numpy(renamed[k])
            if v.dtype.kind not in "fiu":
                mismatched.append((k, shp, f"dtype {v.dtype}"))
                continue
            if tuple(v.shape) != shp:
                # 1x1 convs stored as linear weights or vice versa are the same numbers
                if int(np.prod(v.shape)) == int(np.prod(shp)) and len(shp) >= 2 and v.shape[0] == shp[0] and \
                        all(s == 1 for s in (tuple(v.shape[2:]) + tuple(shp[2:]))):
                    v = v.reshape(shp)
                else:
                    mismatched.append((k, shp, tuple(v.shape)))
                    continue
            new[k] = v
        train_only = training_only_shapes(self.cfg)
        ignored, unexpected = [], []
        for k in renamed:
            if k in self.shapes or k.endswith("num_batches_tracked"):
                continue
            shp = train_only.get(k)
            if shp is None:
                unexpected.append(k)
                continue
            v = to_numpy(renamed[k])
            if tuple(v.shape) == shp:
                ignored.append(k)
            else:       # the aux head of another network: not this checkpoint's
                mismatched.append((k, shp, tuple(v.shape)))
        if strict and (missing or mismatched or unexpected):
            lines = [f"state dict ({scheme} names) does not fit {self.cfg.name} "
                     f"(num_classes={self.cfg.num_classes}):"]
            for k, e, f in mismatched[:20]:
                lines.append(f"  shape mismatch {k}: expected {e}, found {f}")
            if missing:
                lines.append(f"  missing ({len(missing)}): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
            if unexpected:
                lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected[:10])}"
                             f"{' ...' if len(unexpected) > 10 else ''}")
            raise StateDictError("\n".join(lines), missing, unexpected, mismatched)
        merged = dict(self.params)
        merged.update(new)
        self._set_params(merged)     # builds the new network, then swaps it in
        return LoadResult(missing, unexpected, mismatched, scheme, ignored)

    # ---- pickling: configuration + weights, no pointers; the graph is rebuilt lazily
    def __getstate__(self):
        return {"cfg": self.cfg, "params": self.params, "class_names": self.class_names,
                "pretrained_cfg": self.pretrained_cfg, "features_only": self.features_only,
                "out_indices": self.out_indices, "max_bytes": getattr(self, "_max_bytes", 0)}

    def __setstate__(self, state):
        self.cfg = state["cfg"]
        self.shapes = parameter_shapes(self.cfg)
        self.class_names = state["class_names"]
        self.pretrained_cfg = state["pretrained_cfg"]
        self.features_only = state["features_only"]
        self.out_indices = tuple(state["out_indices"])
        self._max_bytes = state.get("max_bytes", _DEFAULT_MAX_BYTES)
        self._lock = threading.Lock()
        self._state = _State({}, None)
        self._set_params(state["params"], build=False)

    def save(self, path: str) -> str:
        """Write the weights as safetensors (timm names) with the
        architecture and class names; reload with :func:`mobilevit.from_pretrained`."""
        from .checkpoint.model_files import save_model
        return save_model(self, path)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of all parameters and BN buffers, under timm's names."""
        return {k: v.copy() for k, v in self.params.items()}

    def num_parameters(self) -> int:
        """Learnable parameters (BatchNorm running statistics excluded)."""
        return int(sum(v.size for k, v in self.params.items() if not _is_buffer(k)))

    def _ensure_graph(self):
        """The C graph of the current network (testing API: Graph.set_fusion,
        set_winograd, node_modes, run)."""
        return self._ensure_net().graph

    @property
    def _node_tags(self) -> Tuple[str, ...]:
        """Op family of each graph node (testing API; profile() groups by it)."""
        return self._ensure_net().tags

    @property
    def min_input_size(self) -> int:
        """Smallest height and width this network takes.  32 (the network
        downsamples by 32), except MobileViTv2 in HF's crop mode at output
        stride 32: its last stage's map must hold a whole 2x2 patch, so 33."""
        c = self.cfg
        if c.version == 2 and c.odd_size == "crop":
            return max(MIN_SIDE, min(32, c.output_stride) + 1)
        return MIN_SIDE

    def _min_size_rule(self) -> str:
        if self.min_input_size > MIN_SIDE:
            return (f"{self.cfg.name} with odd_size='crop' (HF) needs its last stage's map to hold a whole "
                    f"2x2 patch")
        return "the network downsamples by 32"

    # ---- running ----------------------------------------------------------------
    def _check_input(self, x, net: _Network) -> np.ndarray:
        if hasattr(x, "detach") and hasattr(x, "cpu"):
            x = to_numpy(x)
        a = np.asarray(x)
        if a.dtype.kind != "f":
            from .predictor import input_hint
            raise TypeError(f"expected a floating-point NCHW array (float32, or float16/float64 to be converted), "
                            f"got dtype {a.dtype}{input_hint(x)}; convert images with mobilevit.preprocess first")
        if a.ndim != 4:
            hint = " (add a batch axis: x[None])" if a.ndim == 3 else ""
            raise ValueError(f"expected a 4-D NCHW batch, got shape {a.shape}{hint}")
        if a.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected {self.cfg.in_channels} channels on axis 1 (NCHW), got shape {a.shape}")
        lo = self.min_input_size
        if a.shape[2] < lo or a.shape[3] < lo:
            raise ValueError(f"height and width must be at least {lo} ({self._min_size_rule()}), "
                             f"got {a.shape[2]}x{a.shape[3]}")
        if max(a.shape[0], a.shape[2], a.shape[3]) >= 2 ** 31:
            raise ValueError(f"input shape {a.shape}: every dimension must be below 2**31")
        # the activation cap, the float32 conversion and the finite check are
        # the C run's (after planning, before converting or allocating)
        return a

    def _run(self, x, which, num_threads=None, check_finite=True):
        """Runs one consistent network (read once) for the outputs that
        ``which(net)`` names."""
        nth = _threads_arg(num_threads)
        net = self._ensure_net()
        a = self._check_input(x, net)
        return net.graph.run(a, tuple(which(net)), nth, None, bool(check_finite))

    def forward(self, x, num_threads: Optional[int] = None, check_finite: bool = True):
        """Logits [B, num_classes] for a float32 NCHW batch (pooled features
        [B, C] when the model has no classifier).  Segmentation models return
        logits [B, num_classes, H/os, W/os] (HF's ``logits``); models created
        with ``features_only=True`` return the selected stage maps."""
        if self.features_only:
            out_indices = self.out_indices
            return self._run(x, lambda net: [net.feature_ids[i] for i in out_indices], num_threads, check_finite)
        (y,) = self._run(x, lambda net: [net.logits_id if net.logits_id is not None else net.pool_id],
                         num_threads, check_finite)
        if self.cfg.head == "deeplabv3":
            return y
        return y.reshape(y.shape[0], y.shape[1])

    def segment(self, image, preset=None, num_threads: Optional[int] = None,
                align_corners: Optional[bool] = None) -> np.ndarray:
        """Label mask [H, W] (int64) at the image's own resolution for one
        image (path, PIL image or HWC array) or a preprocessed NCHW batch
        ([B, H, W] masks).  Logits are bilinearly upsampled to the input size
        before the argmax: ``align_corners=False`` as transformers'
        ``post_process_semantic_segmentation`` and ml-cvnets v0.1, ``True`` as
        ml-cvnets v0.2+; ``None`` (default): the checkpoint's origin's
        convention (``pretrained_cfg["align_corners"]``, set by
        :func:`mobilevit.from_pretrained`), else False.  The
        upsampling and argmax are one fused kernel, so memory is the mask
        itself (8 bytes per pixel), never num_classes float maps."""
        if self.cfg.head != "deeplabv3":
            raise ValueError("segment() needs a segmentation model (head='deeplabv3')")
        if align_corners is None:
            align_corners = bool((self.pretrained_cfg or {}).get("align_corners", False))
        from .ops import interpolate_bilinear_argmax
        arr = np.asarray(image) if isinstance(image, np.ndarray) else None
        if arr is not None and arr.ndim == 4:
            logits = self.forward(arr, num_threads)
            return interpolate_bilinear_argmax(logits, arr.shape[2:], align_corners, num_threads)
        from .imageio import load_image
        from .preprocess import Preprocess
        img = load_image(image)
        if preset is None:
            from .predictor import preset_for
            preset = preset_for(self)
        elif isinstance(preset, str):
            preset = Preprocess.from_name(preset)
        x = preset(img)[None]
        logits = self.forward(x, num_threads)
        return interpolate_bilinear_argmax(logits, (img.height, img.width), align_corners, num_threads)[0]

    __call__ = forward

    def forward_features(self, x, num_threads: Optional[int] = None, check_finite: bool = True
                         ) -> List[np.ndarray]:
        """Every stage's NCHW feature map: [layer1 .. layer5] (reductions 2,
        4, 8, 16, 32), the same tensors as HF's ``hidden_states`` and timm's
        ``features_only`` outputs."""
        return self._run(x, lambda net: net.stage_ids, num_threads, check_finite)

    def forward_head_features(self, x, num_threads: Optional[int] = None) -> np.ndarray:
        """Output of the final 1x1 expansion conv (timm's ``forward_features``)."""
        (y,) = self._run(x, lambda net: [net.final_id], num_threads)
        return y

    def profile(self, x, repeats: int = 10, num_threads: Optional[int] = None) -> Dict[str, float]:
        """Median seconds per op family over ``repeats`` forward passes (the
        nodes are timed between the workers' barriers).  Inverted residual
        blocks that the plan fuses for this input size are one family."""
        nth = _threads_arg(num_threads)
        net = self._ensure_net()
        a = self._check_input(x, net)
        out_id = net.logits_id if net.logits_id is not None else net.pool_id
        runs = []
        for _ in range(max(1, repeats)):
            prof: list = []
            net.graph.run(a, (out_id,), nth, prof, True)
            runs.append(prof)
        med = np.median(np.array(runs), axis=0)
        modes = net.graph.node_modes(*a.shape[:1], *a.shape[2:])
        fams: Dict[str, float] = {}
        for tag, sec, mode in zip(net.tags, med, modes):
            if mode in (_C.MODE_FUSED_INNER, _C.MODE_FUSED_TAIL):   # inside a fused block: timed with its head
                continue
            if mode == _C.MODE_FUSED_HEAD:
                tag = "inverted residual (fused 1x1 + dw 3x3 + 1x1)"
            fams[tag] = fams.get(tag, 0.0) + float(sec)
        return dict(sorted(fams.items(), key=lambda kv: -kv[1]))

    def profile_workers(self, x, repeats: int = 10, num_threads: Optional[int] = None) -> List[dict]:
        """Where each worker's time goes in a layer-parallel forward pass:
        per worker, ``busy_s`` (inside node chunks), ``wait_s`` (waiting for
        the other workers to finish a node, including the end of the pass)
        and ``chunks`` (how many chunks it ran), from the fastest of
        ``repeats`` passes.  With one thread, wait_s is ~0; a large wait_s at
        two threads means load imbalance, a large busy_s sum compared with
        one thread means the work itself got slower (caches, memory)."""
        nth = _threads_arg(num_threads)
        net = self._ensure_net()
        a = self._check_input(x, net)
        out_id = net.logits_id if net.logits_id is not None else net.pool_id
        best = None
        for _ in range(max(1, repeats)):
            prof: list = []
            workers: list = []
            net.graph.run(a, (out_id,), nth, prof, True, workers)
            if best is None or sum(prof) < best[0]:
                best = (sum(prof), workers)
        return [{"busy_s": b, "wait_s": w, "chunks": c} for b, w, c in best[1]]

    @property
    def feature_info(self) -> List[dict]:
        """Channels and reduction of each stage (only the selected ones for a
        ``features_only`` model), as timm's ``feature_info``."""
        chans = [self.cfg.layer1[-1], self.cfg.layer2[-1]] + [b.channels for b in self.cfg.blocks]
        red = [2, 4, 8, min(16, self.cfg.output_stride), min(32, self.cfg.output_stride)]
        info = [{"num_chs": c, "reduction": r, "module": f"stages.{i}", "index": i}
                for i, (c, r) in enumerate(zip(chans, red))]
        if self.features_only and self.cfg.final_channels:
            info[4] = dict(info[4], num_chs=self.cfg.final_channels, module="final_conv")
        return [info[i] for i in self.out_indices] if self.features_only else info

    @property
    def num_classes(self) -> int:
        """Classifier outputs (segmentation classes for DeepLabv3; 0 for a headless model)."""
        return self.cfg.num_classes

    def activation_bytes(self, batch: int, height: int, width: int) -> int:
        """Bytes of the activation arena a forward pass of this shape needs."""
        return int(self._ensure_graph().plan_bytes(int(batch), int(height), int(width)))

    def set_memory_limit(self, max_bytes: Optional[int]):
        """Refuse (MemoryError, before allocating) inputs whose activations
        would exceed ``max_bytes``; None removes the cap."""
        with self._lock:
            self._max_bytes = int(max_bytes or 0)
            net = self._state.net
            if net is not None:
                net.graph.set_max_bytes(self._max_bytes)

    def __repr__(self):
        c = self.cfg
        blocks = ", ".join(f"C{b.channels}/d{b.dim}/L{b.depth}" for b in c.blocks)
        extra = ""
        if c.head == "deeplabv3":
            src = (self.pretrained_cfg or {}).get("sources") or {}

            def tag(field):   # where a loaded checkpoint's setting came from (see from_pretrained)
                return f" [{src[field]}]" if field in src else ""
            extra = (f"head='deeplabv3', output_stride={c.output_stride}{tag('output_stride')}, "
                     f"aspp_rates={tuple(c.aspp_rates)}{tag('aspp_rates')}, "
                     f"aspp_channels={c.aspp_channels}{tag('aspp_channels')}, ")
        elif self.features_only:
            extra = f"features_only=True, out_indices={tuple(self.out_indices)}, "
        if c.version == 2:
            extra += f"odd_size={c.odd_size!r}, "
        return (f"MobileViT(name={c.name!r}, params={self.num_parameters() / 1e6:.2f}M, {extra}"
                f"num_classes={c.num_classes}, blocks=[{blocks}], final={c.final_channels}, "
                f"isa={_C.get_isa()!r}, threads={_C.get_num_threads()})")

    # ---- notebook / front-door helpers (thin: the work is in predictor.py and notebook.py) ----
    def predict(self, inputs, top_k: int = 5, preset=None, num_threads: Optional[int] = None,
                batch_size: int = 16):
        """Classify (or, for DeepLabv3, segment) one image or a list of them with the
        checkpoint's preprocessing: paths, bytes, PIL images, uint8 HWC arrays.  One input
        gives one :class:`~mobilevit.predictor.Prediction` (``labels``, ``scores``,
        ``class_ids``, ``error``), a list a list; see :func:`mobilevit.predict`."""
        from .predictor import predict
        return predict(inputs, model=self, top_k=top_k, preset=preset, num_threads=num_threads,
                       batch_size=batch_size)

    def summary(self, input_size=None):
        """A table of the stages (module, output shape for one ``input_size`` image, reduction,
        parameters), the total and the kernel path; ``print(model.summary())``, or display it
        in a notebook.  See :func:`mobilevit.notebook.model_summary`."""
        from .notebook import model_summary
        return model_summary(self, input_size)

    def _repr_html_(self):
        """The :meth:`summary` table, for notebooks (``repr(model)`` stays one line)."""
        return self.summary()._repr_html_()


# mobilevit.hub.from_pretrained, registered by mobilevit.hub when it is imported (the package
# __init__ always imports it): hub depends on model, never the other way round.
_PRETRAINED_LOADER: list = [None]


def _register_pretrained_loader(fn) -> None:
    _PRETRAINED_LOADER[0] = fn


def create_model(name: str, num_classes: Optional[int] = None, pretrained: bool = False, weights=None,
                 seed: Optional[int] = 0, features_only: bool = False, out_indices: Sequence[int] = (0, 1, 2, 3, 4),
                 head: Optional[str] = None, output_stride: Optional[int] = None, odd_size: Optional[str] = None,
                 dilate_block_conv: Optional[bool] = None, aspp_channels: Optional[int] = None,
                 aspp_rates: Optional[Sequence[int]] = None) -> MobileViT:
    """Build a model by name: ``mobilevit_xxs`` / ``_xs`` / ``_s``,
    ``mobilevitv2_050`` ... ``mobilevitv2_200``, or ``deeplabv3_<backbone>``.

    Weights start random (no hub access); load real ones with
    ``model.load_state_dict(mapping)`` (timm, HF or ml-cvnets names), pass
    ``weights=mapping``, or use :func:`mobilevit.from_pretrained`.

    * ``num_classes``: classifier outputs (default 1000; 21 for DeepLabv3;
      0 drops the classifier).
    * ``features_only=True``: the model returns the stage maps chosen by
      ``out_indices`` (0..4, reductions 2..32), like timm.
    * ``head="deeplabv3"`` (or a ``deeplabv3_`` name): segmentation with
      ``output_stride`` 16 (default) or 8, ASPP with ``aspp_channels`` and
      ``aspp_rates``.
    * ``odd_size`` (v2): "resize" (timm/ml-cvnets, default) or "crop" (HF).
    """
    from .remote import default_hub_id, is_hub_id
    if is_hub_id(name) and not pretrained:
        import warnings
        warnings.warn(f"create_model({name!r}) builds that architecture with random weights; for the published "
                      f"weights use mobilevit.from_pretrained({name!r}) or pretrained=True", stacklevel=2)
    if pretrained:
        if weights is not None:
            raise ValueError("pass pretrained=True or weights=, not both")
        fixed = dict(features_only=features_only or None, head=None if head in (None, "classifier", "deeplabv3")
                     else head, output_stride=output_stride, odd_size=odd_size, dilate_block_conv=dilate_block_conv,
                     aspp_channels=aspp_channels, aspp_rates=aspp_rates)
        fixed = [k for k, v in fixed.items() if v is not None]
        if fixed:
            raise ValueError(f"pretrained=True loads the published checkpoint as it is, so {', '.join(fixed)} "
                             f"cannot be set; build with pretrained=False and call load_state_dict")
        from_pretrained = _PRETRAINED_LOADER[0]
        if is_hub_id(name):
            source = name
        else:
            seg = head == "deeplabv3" and not name.lower().startswith("deeplabv3")
            source = default_hub_id("deeplabv3_" + name if seg else name)
        model = from_pretrained(source)
        if num_classes is not None and num_classes != model.num_classes:
            raise ValueError(f"{source} has {model.num_classes} classes, not num_classes={num_classes}; build with "
                             f"pretrained=False and load the weights you want with load_state_dict(strict=False)")
        return model
    key = name.lower()
    if key.startswith("deeplabv3_") or key.startswith("deeplabv3-"):
        head = head or "deeplabv3"
        key = key[len("deeplabv3_"):]
    head = head or "classifier"
    if head not in ("classifier", "deeplabv3", "none"):
        raise ValueError(f"head must be 'classifier', 'deeplabv3' or 'none', got {head!r}")
    if features_only:
        head = "none"
        bad = [i for i in out_indices if not isinstance(i, (int, np.integer)) or not 0 <= i <= 4]
        if bad or not out_indices:
            raise ValueError(f"out_indices must be stage indices in 0..4, got {tuple(out_indices)}")
    if num_classes is None:
        num_classes = 21 if head == "deeplabv3" else 1000
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    if head == "deeplabv3" and num_classes < 1:
        raise ValueError("a segmentation model needs num_classes >= 1")
    from dataclasses import replace
    base = get_config(key)
    changes = {"num_classes": 0 if head == "none" else int(num_classes), "head": head}
    if head == "deeplabv3":
        changes["final_channels"] = 0
        changes["output_stride"] = output_stride or 16
        if base.version == 2:
            changes.setdefault("aspp_channels", 512)
    elif output_stride is not None:
        changes["output_stride"] = output_stride
    if changes.get("output_stride", 32) not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {changes['output_stride']}")
    if odd_size is not None:
        if odd_size not in ("resize", "crop"):
            raise ValueError(f"odd_size must be 'resize' (timm/ml-cvnets) or 'crop' (HF), got {odd_size!r}")
        changes["odd_size"] = odd_size
    if dilate_block_conv is not None:
        changes["dilate_block_conv"] = bool(dilate_block_conv)
    if aspp_channels is not None:
        if isinstance(aspp_channels, bool) or not isinstance(aspp_channels, (int, np.integer)) or \
                not 1 <= aspp_channels <= 65536:
            raise ValueError(f"aspp_channels must be an int in 1..65536, got {aspp_channels!r}")
        changes["aspp_channels"] = int(aspp_channels)
    if aspp_rates is not None:
        rates = tuple(aspp_rates) if isinstance(aspp_rates, (list, tuple)) else None
        if rates is None or len(rates) != 3 or any(isinstance(r, bool) or not isinstance(r, (int, np.integer))
                                                   or not 1 <= r <= 1024 for r in rates):
            raise ValueError(f"aspp_rates must be 3 ints in 1..1024 (the atrous rates of the ASPP's 3x3 "
                             f"branches), got {aspp_rates!r}")
        changes["aspp_rates"] = tuple(int(r) for r in rates)
    if head == "none" and not features_only:
        changes["final_channels"] = 0
    cfg = replace(base, **changes)
    model = MobileViT(cfg, seed=seed, build=False)
    if features_only:
        model.features_only = True
        model.out_indices = tuple(int(i) for i in out_indices)
    if weights is not None:
        model.load_state_dict(weights)
    return model
