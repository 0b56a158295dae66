"""State-dict naming schemes: timm (canonical here), HF transformers and
ml-cvnets (spec section 4 and appendix A).

The model's own parameter names are timm's, so loading is a walk over the
expected names with shape checks (tinygrad style).  HF and ml-cvnets names
are rewritten to timm's; HF's separate query/key/value tensors are stacked
into the fused ``qkv`` (rows [q; k; v]).
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Tuple

import numpy as np

_PREFIXES = ("module.", "_orig_mod.")


def to_numpy(v) -> np.ndarray:
    """numpy array from a numpy array, a torch tensor (without importing
    torch) or anything array-like."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu()
        if str(getattr(v, "dtype", "")) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    return np.asarray(v)


def strip_prefixes(sd: Mapping[str, object]) -> Dict[str, object]:
    """The state dict without wrapper prefixes (``module.``, ``model.``, ``encoder.``, ...)."""
    out = {}
    for k, v in sd.items():
        # An offset, sliced once: re-slicing per prefix would be quadratic in the key's length
        # for a hostile "module.module.module...." key.
        i, changed = 0, True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p, i):
                    i += len(p)
                    changed = True
        out[k[i:] if i else k] = v
    return out


def detect_scheme(keys) -> str:
    """Which library named these keys: "hf", "timm" or "cvnets"."""
    keys = list(keys)
    if any(k.startswith("mobilevit.") or k.startswith("mobilevitv2.") or k.startswith("segmentation_head.")
           for k in keys):
        return "hf"
    if any(k.startswith("conv_1.block") or k.startswith("layer_1.") or ".global_rep." in k or
           k.startswith("encoder.conv_1.") for k in keys):
        return "cvnets"
    return "timm"


_BN = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}

_HF_RULES = [
    (r"^segmentation_head\.aspp\.convs\.(\d)\.conv_1x1\.convolution\.", r"seg_head.aspp.convs.\1.conv."),
    (r"^segmentation_head\.aspp\.convs\.(\d)\.conv_1x1\.normalization\.", r"seg_head.aspp.convs.\1.bn."),
    (r"^segmentation_head\.aspp\.convs\.(\d)\.convolution\.", r"seg_head.aspp.convs.\1.conv."),
    (r"^segmentation_head\.aspp\.convs\.(\d)\.normalization\.", r"seg_head.aspp.convs.\1.bn."),
    (r"^segmentation_head\.aspp\.project\.convolution\.", "seg_head.aspp.project.conv."),
    (r"^segmentation_head\.aspp\.project\.normalization\.", "seg_head.aspp.project.bn."),
    (r"^segmentation_head\.classifier\.convolution\.", "seg_head.classifier."),
    (r"^mobilevitv2\.", "mobilevit."),
    (r"\.attention\.qkv_proj\.convolution\.", ".attn.qkv_proj."),
    (r"\.attention\.out_proj\.convolution\.", ".attn.out_proj."),
    (r"\.ffn\.conv1\.convolution\.", ".mlp.fc1."),
    (r"\.ffn\.conv2\.convolution\.", ".mlp.fc2."),
    (r"^mobilevit\.conv_stem\.convolution\.", "stem.conv."),
    (r"^mobilevit\.conv_stem\.normalization\.", "stem.bn."),
    (r"^mobilevit\.conv_1x1_exp\.convolution\.", "final_conv.conv."),
    (r"^mobilevit\.conv_1x1_exp\.normalization\.", "final_conv.bn."),
    (r"^classifier\.", "head.fc."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.layer\.(\d+)\.", r"stages.\1.\2."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.downsampling_layer\.", r"stages.\1.0."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.conv_1x1\.convolution\.weight$", r"stages.\1.1.conv_1x1.weight"),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.", r"stages.\1.1.transformer.\2."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.layernorm\.", r"stages.\1.1.norm."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.conv_kxk\.", r"stages.\1.1.conv_kxk."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.conv_projection\.", r"stages.\1.1.conv_proj."),
    (r"^mobilevit\.encoder\.layer\.(\d+)\.fusion\.", r"stages.\1.1.conv_fusion."),
    (r"\.expand_1x1\.", ".conv1_1x1."),
    (r"\.conv_3x3\.", ".conv2_kxk."),
    (r"\.reduce_1x1\.", ".conv3_1x1."),
    (r"\.convolution\.", ".conv."),
    (r"\.normalization\.", ".bn."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.attention\.attention\.(query|key|value)\.", r".attn.\1."),
]

_CVNETS_RULES = [
    (r"^encoder\.", ""),
    # ml-cvnets' auxiliary head on layer 4 (use_aux_head, training only): renamed so that the model can
    # check it against the shapes it must have and ignore it by name (MobileViT.load_state_dict)
    (r"^seg_head\.aux_head\.0\.block\.conv\.", "seg_head.aux_head.0.conv."),
    (r"^seg_head\.aux_head\.0\.block\.norm\.", "seg_head.aux_head.0.bn."),
    (r"^seg_head\.aux_head\.2\.block\.conv\.", "seg_head.aux_head.2."),
    (r"^seg_head\.aspp\.aspp_layer\.convs\.(\d)\.aspp_pool\.conv_1x1\.block\.conv\.", r"seg_head.aspp.convs.\1.conv."),
    (r"^seg_head\.aspp\.aspp_layer\.convs\.(\d)\.aspp_pool\.conv_1x1\.block\.norm\.", r"seg_head.aspp.convs.\1.bn."),
    (r"^seg_head\.aspp\.aspp_layer\.convs\.(\d)\.block\.conv\.", r"seg_head.aspp.convs.\1.conv."),
    (r"^seg_head\.aspp\.aspp_layer\.convs\.(\d)\.block\.norm\.", r"seg_head.aspp.convs.\1.bn."),
    (r"^seg_head\.aspp\.aspp_layer\.project\.block\.conv\.", "seg_head.aspp.project.conv."),
    (r"^seg_head\.aspp\.aspp_layer\.project\.block\.norm\.", "seg_head.aspp.project.bn."),
    (r"^seg_head\.classifier\.classifier\.block\.conv\.", "seg_head.classifier."),
    (r"^seg_head\.classifier\.block\.conv\.", "seg_head.classifier."),
    (r"^classifier\.1\.", "head.fc."),
    (r"\.local_rep\.0\.block\.", ".conv_kxk."),
    (r"\.local_rep\.1\.block\.conv\.weight$", ".conv_1x1.weight"),
    (r"\.global_rep\.(\d+)\.pre_norm_attn\.0\.", r".transformer.\1.norm1."),
    (r"\.global_rep\.(\d+)\.pre_norm_attn\.1\.qkv_proj\.block\.conv\.", r".transformer.\1.attn.qkv_proj."),
    (r"\.global_rep\.(\d+)\.pre_norm_attn\.1\.out_proj\.block\.conv\.", r".transformer.\1.attn.out_proj."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.1\.block\.conv\.", r".transformer.\1.mlp.fc1."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.3\.block\.conv\.", r".transformer.\1.mlp.fc2."),
    (r"^conv_1\.block\.conv\.", "stem.conv."),
    (r"^conv_1\.block\.norm\.", "stem.bn."),
    (r"^conv_1x1_exp\.block\.conv\.", "final_conv.conv."),
    (r"^conv_1x1_exp\.block\.norm\.", "final_conv.bn."),
    (r"^classifier\.fc\.", "head.fc."),
    (r"^layer_(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}."),
    (r"\.block\.exp_1x1\.block\.", ".conv1_1x1."),
    (r"\.block\.conv_3x3\.block\.", ".conv2_kxk."),
    (r"\.block\.red_1x1\.block\.", ".conv3_1x1."),
    (r"\.local_rep\.conv_3x3\.block\.", ".conv_kxk."),
    (r"\.local_rep\.conv_1x1\.block\.conv\.weight$", ".conv_1x1.weight"),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.0\.", r".transformer.\1.norm1."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.", r".transformer.\1.attn.qkv."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.out_proj\.", r".transformer.\1.attn.proj."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.0\.", r".transformer.\1.norm2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.1\.", r".transformer.\1.mlp.fc1."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.4\.", r".transformer.\1.mlp.fc2."),
    (r"\.global_rep\.(\d+)\.(weight|bias)$", r".norm.\2"),
    (r"\.conv_proj\.block\.", ".conv_proj."),
    (r"\.fusion\.block\.", ".conv_fusion."),
    (r"\.conv\.weight$", ".conv.weight"),
    (r"\.norm\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r".bn.\1"),
]


def _apply(rules, key: str) -> str:
    for pat, rep in rules:
        key = re.sub(pat, rep, key)
    return key


def _fix_cvnets_norm(key: str) -> str:
    # the generic ".norm." -> ".bn." rule must not touch the transformer's
    # LayerNorms ("transformer.i.norm1" and the block's final "norm")
    if ".transformer." in key or key.startswith("seg_head."):
        return key
    m = re.match(r"^(stages\.\d+\.1)\.bn\.(weight|bias)$", key)
    if m:  # final LayerNorm of a MobileViT block
        return f"{m.group(1)}.norm.{m.group(2)}"
    return key


def to_timm(sd: Mapping[str, object], scheme: str | None = None, partial: bool = False
            ) -> Tuple[Dict[str, np.ndarray], str]:
    """Rename a v1 state dict to timm names.  Returns (mapping, scheme).

    HF attention with only some of query/key/value raises :class:`CheckpointError` naming the
    layer and the missing parts; with ``partial=True`` (``strict=False`` loading) the incomplete
    fused tensor is left out instead, so the model reports it as missing."""
    sd = strip_prefixes(sd)
    scheme = scheme or detect_scheme(sd.keys())
    out: Dict[str, np.ndarray] = {}
    if scheme == "timm":
        return {k: v for k, v in sd.items()}, scheme
    if scheme == "hf":
        qkv: Dict[str, Dict[str, object]] = {}
        for k, v in sd.items():
            nk = _apply(_HF_RULES, k)
            m = re.match(r"^(.*\.attn)\.(query|key|value)\.(weight|bias)$", nk)
            if m:
                qkv.setdefault(f"{m.group(1)}.qkv.{m.group(3)}", {})[m.group(2)] = v
                continue
            out[nk] = v
        for nk, parts in qkv.items():
            if set(parts) != {"query", "key", "value"}:
                if partial:
                    continue
                from .checkpoint import CheckpointError
                missing = sorted({"query", "key", "value"} - set(parts))
                src = nk.replace(".qkv.", "." + "{" + ",".join(missing) + "}.")
                raise CheckpointError(f"{nk}: HF attention is missing {', '.join(missing)} "
                                      f"(HF name attention.attention.{missing[0]}.{nk.rsplit('.', 1)[1]}; "
                                      f"timm name {src})")
            arrs = [to_numpy(parts[p]) for p in ("query", "key", "value")]
            if len({a.ndim for a in arrs}) != 1 or arrs[0].ndim < 1 or \
                    len({a.shape[1:] for a in arrs}) != 1:
                if partial:
                    continue
                from .checkpoint import CheckpointError
                raise CheckpointError(f"{nk}: HF query/key/value shapes "
                                      f"{[a.shape for a in arrs]} cannot be stacked into one qkv tensor")
            out[nk] = np.concatenate(arrs, axis=0)
        return out, scheme
    if scheme == "cvnets":
        for k, v in sd.items():
            out[_fix_cvnets_norm(_apply(_CVNETS_RULES, k))] = v
        return out, scheme
    raise ValueError(f"unknown naming scheme {scheme!r}")
