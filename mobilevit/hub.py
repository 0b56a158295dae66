"""``from_pretrained`` and ``save``: checkpoints from ml-cvnets, timm and HF
transformers, read without torch.

Accepted sources:

* an in-memory mapping of numpy arrays or torch tensors (any of the three
  naming schemes, optionally nested in a training checkpoint);
* a single file — ``torch.save`` (zip or legacy), ``.safetensors`` — the
  format detected from its bytes; the variant inferred from tensor shapes;
* a folder — HF (``config.json`` with ``model_type`` ``mobilevit`` +
  ``model.safetensors`` or ``pytorch_model.bin``), timm's ``save_for_hf``
  layout (``config.json`` with ``architecture``), or a folder written by
  :meth:`MobileViT.save`.  ``model.safetensors`` is preferred when present.

Loading never executes code from the file (see :mod:`mobilevit.checkpoint`)
and a model is returned only when every tensor fitted.
"""
from __future__ import annotations

import json
import math
import os
from typing import Mapping, Optional

import numpy as np

from .checkpoint import (
    CheckpointError, extract_state_dict, load_checkpoint, read_regular_file,
)
from .checkpoint.inert import brief
from .checkpoint.model_files import save_model as save
from .config import MODEL_CONFIGS, get_config
from .keymap import to_timm

_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


_V1_BY_C5 = {cfg.blocks[-1].channels: name for name, cfg in MODEL_CONFIGS.items() if cfg.version == 1}
_V2_BY_C5 = {cfg.blocks[-1].channels: name for name, cfg in MODEL_CONFIGS.items() if cfg.version == 2}


def infer_variant(timm_sd: Mapping[str, object]) -> str:
    """Variant from tensor shapes: v2 if the attention has ``qkv_proj``
    (1 + 2d outputs), then the last stage's width picks XXS/XS/S or the v2
    width multiplier."""
    w = timm_sd.get("stages.4.1.conv_proj.conv.weight")
    if w is None:
        raise CheckpointError("cannot tell the MobileViT variant: no stages.4 projection conv "
                              "(layer_5 / encoder.layer.4) in the checkpoint; pass model_name=")
    if np.ndim(w) < 1:
        raise CheckpointError(f"stages.4.1.conv_proj.conv.weight has shape {np.shape(w)}, not a conv weight")
    c5 = int(np.shape(w)[0])
    v2 = any(".attn.qkv_proj." in k for k in timm_sd)
    table = _V2_BY_C5 if v2 else _V1_BY_C5
    name = table.get(c5)
    if name is None:
        raise CheckpointError(f"last stage width {c5} matches no known MobileViT{'v2' if v2 else ''} variant "
                              f"({', '.join(sorted(table.values()))}); pass model_name=")
    return name


def _num_classes(timm_sd) -> int:
    w = timm_sd.get("head.fc.weight")
    if w is not None and np.ndim(w) < 1:
        raise CheckpointError(f"head.fc.weight has shape {np.shape(w)}, not a classifier weight")
    return 0 if w is None else int(np.shape(w)[0])





_MAX_JSON_BYTES = 16 << 20
_INT31 = (1 << 31) - 1


def _read_json(path: str) -> dict:
    """A JSON object from a regular file (FIFOs and devices are refused unopened), validated."""
    raw = read_regular_file(path, what="JSON file", max_bytes=_MAX_JSON_BYTES)
    return _parse_config(bytes(raw), path)


def _parse_config(raw, where: str) -> dict:
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        data = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got a JSON {type(data).__name__}")
    _check_config_fields(data, where)
    return data


def _no_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _is_int(v, lo=0, hi=_INT31) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v, lo, hi) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and lo <= v <= hi)


def _int_list(lo, hi, n=None):
    return lambda v: (isinstance(v, list) and (n is None or len(v) == n) and len(v) <= 64
                      and all(_is_int(x, lo, hi) for x in v))


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _id2label(v) -> bool:
    if not isinstance(v, dict):
        return False
    for k, lbl in v.items():
        if not isinstance(lbl, str) or not (k.isascii() and k.isdigit()) or len(k) > 10:
            return False
        if not 0 <= int(k) <= _INT31:
            return False
    return True


def _input_size(v) -> bool:
    return isinstance(v, list) and len(v) <= 4 and all(_is_int(x, 1, 65536) for x in v)


def _pretrained_cfg(v) -> bool:
    return v is None or (isinstance(v, dict) and ("input_size" not in v or _input_size(v["input_size"])))


# The fields of config.json (HF transformers, timm's save_for_hf, MobileViT.save) that loading reads,
# each with the rule a present value must satisfy.  Checked before any is used, so a malformed file
# raises CheckpointError naming the file and the field instead of a TypeError deep in the loader.
_CONFIG_FIELDS = {
    "architecture": ("a known model name (str)", lambda v: isinstance(v, str) and _known_model(v)),
    "model_type": ("a string", lambda v: isinstance(v, str)),
    "num_classes": ("an int in [0, 2**31)", lambda v: _is_int(v)),
    "num_labels": ("an int in [0, 2**31)", lambda v: _is_int(v)),
    "id2label": ('an object {"<int>": "<label>"}', _id2label),
    "label2id": ('an object {"<label>": <int>}',
                 lambda v: isinstance(v, dict) and all(_is_int(i) for i in v.values())),
    "label_names": ("a list of strings", _str_list),
    "class_names": ("a list of strings", _str_list),
    "hidden_sizes": ("a list of ints in [1, 2**31)", _int_list(1, _INT31)),
    "neck_hidden_sizes": ("a list of ints in [1, 2**31)", _int_list(1, _INT31)),
    "image_size": ("an int in [1, 65536] or a list of them",
                   lambda v: _is_int(v, 1, 65536) or _input_size(v)),
    "patch_size": ("an int in [1, 64]", lambda v: _is_int(v, 1, 64)),
    "num_channels": ("an int in [1, 64]", lambda v: _is_int(v, 1, 64)),
    "num_attention_heads": ("an int in [1, 1024]", lambda v: _is_int(v, 1, 1024)),
    "conv_kernel_size": ("an odd int in [1, 31]", lambda v: _is_int(v, 1, 31) and v % 2 == 1),
    "width_multiplier": ("a number in (0, 8]", lambda v: _is_num(v, 1e-3, 8)),
    "mlp_ratio": ("a number in (0, 64]", lambda v: _is_num(v, 1e-3, 64)),
    "expand_ratio": ("a number in (0, 64]", lambda v: _is_num(v, 1e-3, 64)),
    "layer_norm_eps": ("a number in [0, 1]", lambda v: _is_num(v, 0, 1)),
    "output_stride": ("8, 16 or 32", lambda v: _is_int(v) and v in (8, 16, 32)),
    "atrous_rates": ("a list of 3 ints in [1, 1024]", _int_list(1, 1024, 3)),
    "odd_size": ('"resize" or "crop"', lambda v: v in ("resize", "crop") and isinstance(v, str)),
    "pretrained_cfg": ("an object (input_size: a list of ints) or null", _pretrained_cfg),
    "preprocess": ("an object", lambda v: isinstance(v, dict)),
}


def _known_model(name: str) -> bool:
    try:
        get_config(name)
    except ValueError:
        return False
    return True


def _check_config_fields(cfg: dict, where: str) -> None:
    for field, (rule, ok) in _CONFIG_FIELDS.items():
        if field in cfg and not ok(cfg[field]):
            raise CheckpointError(f"{where}: field {field!r} is {brief(cfg[field], 80)}; expected {rule}")


def _hf_variant(cfg: dict) -> Optional[str]:
    if cfg.get("model_type") == "mobilevitv2" and cfg.get("width_multiplier") is not None:
        name = f"mobilevitv2_{int(round(float(cfg['width_multiplier']) * 100)):03d}"
        return name if name in MODEL_CONFIGS else None
    neck = cfg.get("neck_hidden_sizes")
    if isinstance(neck, list) and len(neck) >= 6:
        return _V1_BY_C5.get(int(neck[5]))
    return None


def _labels_from(cfg: dict, n: int):
    id2label = cfg.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            labels = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]
        except Exception:
            return None
        if labels and not all(lbl == f"LABEL_{i}" for i, lbl in enumerate(labels)):
            return labels
    names = cfg.get("label_names") or cfg.get("class_names")
    if isinstance(names, list) and len(names) == n:
        return [str(x) for x in names]
    return None


def _load_folder(path: str, prefer_ema: bool):
    try:
        files = os.listdir(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot list the folder ({e.strerror or e})") from e
    weights = next((os.path.join(path, f) for f in _HF_WEIGHTS if f in files), None)
    if weights is None:
        cands = sorted(f for f in files if f.endswith((".safetensors", ".pt", ".pth", ".bin")))
        if len(cands) != 1:
            raise CheckpointError(f"{path}: no model.safetensors / pytorch_model.bin"
                                  + (f" and several candidates: {cands}" if cands else ""))
        weights = os.path.join(path, cands[0])
    # Small JSON files first: a malformed config fails before a large checkpoint is read.
    cfg = _read_json(os.path.join(path, "config.json")) if "config.json" in files else {}
    pre = None
    if "preprocessor_config.json" in files:
        pre_path = os.path.join(path, "preprocessor_config.json")
        raw_pre = read_regular_file(pre_path, what="JSON file", max_bytes=_MAX_JSON_BYTES)
        try:
            pre = json.loads(bytes(raw_pre).decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise CheckpointError(f"{pre_path}: not valid JSON ({type(e).__name__})") from None
        if not isinstance(pre, dict):
            raise CheckpointError(f"{pre_path}: expected a JSON object, got a JSON {type(pre).__name__}")
    return load_checkpoint(weights, prefer_ema=prefer_ema), cfg, pre, weights


def from_pretrained(source, model_name: Optional[str] = None, num_classes: Optional[int] = None,
                    strict: bool = True, prefer_ema: bool = False, scheme: Optional[str] = None, *,
                    revision: Optional[str] = None, sha256: Optional[str] = None,
                    cache_dir: Optional[str] = None, token=None, progress: Optional[bool] = None,
                    local_files_only: Optional[bool] = None):
    """Build a :class:`MobileViT` from a checkpoint file, a model folder or a
    mapping; see the module docstring.  ``model_name`` overrides the variant
    inferred from the tensors.  Class names come from ``config.json``
    (``id2label``, as transformers' pipeline prints them, ``LABEL_n``
    included) or from a folder written by :meth:`MobileViT.save`.

    ``source`` may also be a Hugging Face Hub id (``"apple/mobilevit-small"``,
    ``"hf-hub:timm/mobilevit_s.cvnets_in1k"``; with ``revision=``, ``token=``;
    needs ``pip install "mobilevit[hub]"``) or an http(s) URL (``sha256=``),
    fetched once into a cache; ``local_files_only=True`` / ``HF_HUB_OFFLINE=1``
    uses the cache only.  An existing local path is never looked up remotely;
    see :mod:`mobilevit.remote` for the rule and the cache layout."""
    requested = source
    if isinstance(source, (str, os.PathLike)):
        from .remote import resolve
        source = resolve(source, revision=revision, sha256=sha256, cache_dir=cache_dir, token=token,
                         progress=progress, local_files_only=local_files_only)
    elif any(v is not None for v in (revision, sha256, cache_dir, token, local_files_only)):
        raise ValueError("revision=, sha256=, cache_dir=, token= and local_files_only= apply to a hub id or URL")

    cfg_json: dict = {}
    pre_json = None
    origin = "mapping"
    if isinstance(source, Mapping):
        raw = extract_state_dict(dict(source), prefer_ema=prefer_ema) if _looks_nested(source) else dict(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            raw, cfg_json, pre_json, origin = _load_folder(path, prefer_ema)
        elif os.path.exists(path):
            # Regular or not: load_checkpoint refuses FIFOs / devices / sockets without opening them.
            raw, info = load_checkpoint(path, prefer_ema=prefer_ema, return_info=True)
            origin = path
            embedded = info.metadata.get("mobilevit_config")
            if embedded:
                cfg_json = _parse_config(embedded, f"{path}: __metadata__['mobilevit_config']")
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    else:
        raise TypeError(f"from_pretrained takes a path or a mapping, got {type(source).__name__}")

    timm_sd, detected = to_timm(raw, scheme, partial=not strict)
    name = model_name or cfg_json.get("architecture") or _hf_variant(cfg_json) or infer_variant(timm_sd)
    base = get_config(name)
    kwargs = {}
    if any(k.startswith("seg_head.") for k in timm_sd):
        w = timm_sd.get("seg_head.classifier.weight")
        proj = timm_sd.get("seg_head.aspp.project.conv.weight")
        for k, t in (("seg_head.classifier.weight", w), ("seg_head.aspp.project.conv.weight", proj)):
            if t is not None and np.ndim(t) < 1:
                raise CheckpointError(f"{k} has shape {np.shape(t)}, not a conv weight")
        n_cls = num_classes if num_classes is not None else (int(np.shape(w)[0]) if w is not None else 21)
        kwargs = dict(head="deeplabv3",
                      output_stride=int(cfg_json.get("output_stride") or 16),
                      aspp_rates=tuple(cfg_json.get("atrous_rates") or (6, 12, 18)),
                      aspp_channels=int(np.shape(proj)[0]) if proj is not None else None)
        if base.version == 2 and detected == "cvnets":
            kwargs["dilate_block_conv"] = True
    else:
        n_cls = num_classes if num_classes is not None else _num_classes(timm_sd)
    if base.version == 2:
        kwargs["odd_size"] = cfg_json.get("odd_size") or ("crop" if detected == "hf" else "resize")
    from .model import create_model
    model = create_model(name, num_classes=n_cls, **kwargs)
    model.load_state_dict(timm_sd, strict=strict, scheme="timm")
    if n_cls and num_classes is None and any(cfg_json.get(k) is not None for k in ("id2label", "label_names")):
        from .labels import class_names
        model.class_names, _ = class_names(cfg_json, n_cls)  # the checkpoint's own names, LABEL_n included
    else:
        labels = _labels_from(cfg_json, n_cls)  # older folders with "class_names"
        if labels is not None:
            model.class_names = labels
    model.pretrained_cfg = {
        "source": origin, "scheme": detected, "architecture": name,
        "requested": os.fspath(requested) if isinstance(requested, (str, os.PathLike)) else "mapping",
        "image_size": cfg_json.get("image_size") or (cfg_json.get("pretrained_cfg") or {}).get("input_size"),
        "preprocessor_config": pre_json,
        "pretrained_cfg": cfg_json.get("pretrained_cfg"),
        "preprocess": cfg_json.get("preprocess"),
    }
    return model


def _looks_nested(sd: Mapping) -> bool:
    return any(isinstance(v, Mapping) for v in sd.values())


__all__ = ["from_pretrained", "save", "infer_variant"]


from . import model as _model  # noqa: E402  (one-way: hub -> model)
_model._register_pretrained_loader(from_pretrained)
