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
    "aspp_out_channels": ("an int in [1, 65536]", lambda v: _is_int(v, 1, 65536)),
    "dilate_block_conv": ("true or false", lambda v: isinstance(v, bool)),
    "align_corners": ("true or false", lambda v: isinstance(v, bool)),
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


# DeepLabv3 recipes of ml-cvnets (config/segmentation/*.yaml, checked against its code: output
# stride 16 makes layer 5's MV2 stride 1; 8 also layer 4's, with layer 5's depthwise conv dilated by 2;
# MobileViTv2 blocks dilate their local depthwise conv by the running dilation, v1 blocks never) and
# what a checkpoint's tensors say about them.  Only output_stride and the atrous rates are not in the
# tensors; the ASPP width is (seg_head.aspp.project), and the aux head's presence is a key.
_RECIPES = {
    "cvnets_v1_os8": ("ml-cvnets v0.2+ pascal_voc/deeplabv3_mobilevit.yaml (MobileViT v1, ASPP 512, aux head): "
                      "output stride 8, rates 12/24/36", 8, (12, 24, 36)),
    "cvnets_v1_os16": ("ml-cvnets v0.1 deeplabv3_mobilevit_*.yaml, as transformers converted it (ASPP 256): "
                       "output stride 16, rates 6/12/18", 16, (6, 12, 18)),
    "cvnets_v2_ade20k": ("ml-cvnets ade20k/deeplabv3_mobilevitv2.yaml (MobileViTv2, 150 classes, ASPP 512): "
                         "output stride 8, rates 12/24/36", 8, (12, 24, 36)),
    "cvnets_v2_voc": ("ml-cvnets pascal_voc/deeplabv3_mobilevitv2.yaml (MobileViTv2, ASPP 512): "
                      "output stride 16, rates 6/12/18", 16, (6, 12, 18)),
}


def deeplab_recipe(version: int, aspp_channels: Optional[int], num_classes: int, aux_head: bool):
    """The ml-cvnets DeepLabv3 recipe a checkpoint's tensors point to: ``(key, description,
    output_stride, atrous_rates)``, or None when nothing identifies one.

    * MobileViT v1 with a 512-channel ASPP: v0.2+ pascal_voc (output stride 8, rates 12/24/36; the
      only v1 recipe with that width, and it trains the layer-4 aux head);
    * v1 with a 256-channel ASPP: v0.1 (output stride 16, rates 6/12/18; HF's apple/deeplabv3-*);
    * MobileViTv2 with 150 classes: ADE20k (output stride 8, rates 12/24/36);
    * any other MobileViTv2: pascal_voc (output stride 16, rates 6/12/18)."""
    if version == 1 and aspp_channels == 512:
        key = "cvnets_v1_os8"
    elif version == 1 and aspp_channels == 256 and not aux_head:
        key = "cvnets_v1_os16"
    elif version == 2 and num_classes == 150:
        key = "cvnets_v2_ade20k"
    elif version == 2:
        key = "cvnets_v2_voc"
    else:
        return None
    text, os_, rates = _RECIPES[key]
    return key, text, os_, rates


def checkpoint_origin(scheme: str, version: int, head: str, recipe: Optional[str]) -> str:
    """The key of :data:`mobilevit.preprocess.ORIGIN_PRESETS` for a checkpoint: its naming scheme
    (who wrote it), the MobileViT version and the head (for ml-cvnets DeepLabv3, the recipe: v0.1
    or v0.2+)."""
    if head == "deeplabv3":
        if scheme == "hf":
            return "hf_deeplab"
        if scheme == "cvnets":
            if version == 2:
                return "cvnets_v2_deeplab"
            return "cvnets_deeplab" if recipe == "cvnets_v1_os16" else "cvnets_v2_deeplab_v1"
    if scheme == "hf":
        return "hf"
    if scheme == "cvnets":
        return "cvnets_v2" if version == 2 else "cvnets"
    return "timm_v2" if version == 2 else "timm"


def _deeplab_settings(base, timm_sd, detected, cfg_json, n_cls, output_stride, aspp_rates, aspp_channels):
    """create_model keyword arguments for a DeepLabv3 checkpoint, where each came from
    (``sources``: argument / config.json / file / assumed) and the recipe they match."""
    proj = timm_sd.get("seg_head.aspp.project.conv.weight")
    aux = any(k.startswith("seg_head.aux_head.") for k in timm_sd)
    sources = {}
    file_width = int(np.shape(proj)[0]) if proj is not None else None
    if aspp_channels is not None:
        width, sources["aspp_channels"] = aspp_channels, "argument"
    elif file_width is not None:
        width, sources["aspp_channels"] = file_width, "file"
    elif cfg_json.get("aspp_out_channels") is not None:
        width, sources["aspp_channels"] = int(cfg_json["aspp_out_channels"]), "config.json"
    else:
        width, sources["aspp_channels"] = (512 if base.version == 2 else 256), "assumed"
    found = deeplab_recipe(base.version, width, n_cls, aux)
    recipe, text, r_os, r_rates = found if found else (None, None, None, None)
    if output_stride is not None:
        os_, sources["output_stride"] = output_stride, "argument"
    elif cfg_json.get("output_stride") is not None:
        os_, sources["output_stride"] = int(cfg_json["output_stride"]), "config.json"
    elif r_os is not None:
        os_, sources["output_stride"] = r_os, "assumed"
    else:
        os_, sources["output_stride"] = 16, "assumed"
    if aspp_rates is not None:
        rates, sources["aspp_rates"] = aspp_rates, "argument"
    elif cfg_json.get("atrous_rates") is not None:
        rates, sources["aspp_rates"] = tuple(cfg_json["atrous_rates"]), "config.json"
    elif r_rates is not None and r_os == os_:
        rates, sources["aspp_rates"] = r_rates, "assumed"
    else:   # DeepLabv3's convention: the rates double when the output stride halves
        rates, sources["aspp_rates"] = ((12, 24, 36) if os_ == 8 else (6, 12, 18)), "assumed"
    kwargs = dict(head="deeplabv3", output_stride=os_, aspp_rates=rates, aspp_channels=width)
    if cfg_json.get("dilate_block_conv") is not None:
        kwargs["dilate_block_conv"] = bool(cfg_json["dilate_block_conv"])
    elif base.version == 2 and detected == "cvnets":
        kwargs["dilate_block_conv"] = True     # ml-cvnets' MobileViTv2 block dilates its local conv
    assumed = [k for k in ("output_stride", "aspp_rates") if sources[k] == "assumed"]
    note = None
    if assumed and recipe is not None and r_os == os_:
        note = f"{' and '.join(assumed)} assumed from the tensors: {text}"
    elif assumed:
        note = (f"{' and '.join(assumed)} assumed: no ml-cvnets recipe matches the tensors, DeepLabv3's defaults "
                f"(output stride 16; rates 6/12/18, 12/24/36 at output stride 8)")
    return kwargs, sources, recipe, note, aux


def from_pretrained(source, model_name: Optional[str] = None, num_classes: Optional[int] = None,
                    strict: bool = True, prefer_ema: bool = False, scheme: Optional[str] = None, *,
                    revision: Optional[str] = None, sha256: Optional[str] = None,
                    cache_dir: Optional[str] = None, token=None, progress: Optional[bool] = None,
                    local_files_only: Optional[bool] = None, output_stride: Optional[int] = None,
                    aspp_rates=None, aspp_channels: Optional[int] = None, preset=None):
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
    see :mod:`mobilevit.remote` for the rule and the cache layout.

    DeepLabv3 checkpoints: ``output_stride`` (8, 16, 32), ``aspp_rates`` (3
    ints) and ``aspp_channels`` override what ``config.json`` (HF's
    ``output_stride`` / ``atrous_rates`` / ``aspp_out_channels``) says, which
    overrides what the tensors imply: the ASPP width is read from them, and
    the output stride and rates of ml-cvnets' recipes are inferred
    (:func:`deeplab_recipe`).  ``model.pretrained_cfg["sources"]`` says, per
    setting, "argument", "config.json", "file" or "assumed" (also in
    ``repr(model)`` and ``model.summary()``).  ml-cvnets' training-only aux head
    (``seg_head.aux_head.*``) is checked against the shapes it must have and
    ignored (``pretrained_cfg["ignored"]``); any other unknown key is an error.

    Preprocessing (``model.pretrained_cfg["preprocess"]``, used by ``predict``,
    ``segment``, :class:`~mobilevit.Predictor` and the CLI): ``preset`` (a name
    of :data:`mobilevit.preprocess.PRESETS` or a ``Preprocess``) if given, else
    the checkpoint's ``preprocessor_config.json`` / ``config.json``, else the
    preset of its origin (:data:`mobilevit.preprocess.ORIGIN_PRESETS`)."""
    from .preprocess import ORIGIN_PRESETS, Preprocess, preset_for_origin
    if preset is not None and not isinstance(preset, (str, Preprocess)):
        raise TypeError(f"preset must be a preset name or a mobilevit.preprocess.Preprocess, "
                        f"got {type(preset).__name__}")
    user_preset = Preprocess.from_name(preset) if isinstance(preset, str) else preset
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
    sources, recipe, note, aux = {}, None, None, False
    if any(k.startswith("seg_head.") for k in timm_sd):
        w = timm_sd.get("seg_head.classifier.weight")
        proj = timm_sd.get("seg_head.aspp.project.conv.weight")
        for k, t in (("seg_head.classifier.weight", w), ("seg_head.aspp.project.conv.weight", proj)):
            if t is not None and np.ndim(t) < 1:
                raise CheckpointError(f"{k} has shape {np.shape(t)}, not a conv weight")
        n_cls = num_classes if num_classes is not None else (int(np.shape(w)[0]) if w is not None else 21)
        kwargs, sources, recipe, note, aux = _deeplab_settings(base, timm_sd, detected, cfg_json, n_cls,
                                                               output_stride, aspp_rates, aspp_channels)
    else:
        given = [k for k, v in (("output_stride", output_stride), ("aspp_rates", aspp_rates),
                                ("aspp_channels", aspp_channels)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to a DeepLabv3 checkpoint (seg_head.* tensors); "
                             f"this one is a classifier")
        n_cls = num_classes if num_classes is not None else _num_classes(timm_sd)
    if base.version == 2:
        kwargs["odd_size"] = cfg_json.get("odd_size") or ("crop" if detected == "hf" else "resize")
    from .model import create_model
    model = create_model(name, num_classes=n_cls, **kwargs)
    result = model.load_state_dict(timm_sd, strict=strict, scheme="timm")
    if n_cls and num_classes is None and any(cfg_json.get(k) is not None for k in ("id2label", "label_names")):
        from .labels import class_names
        model.class_names, _ = class_names(cfg_json, n_cls)  # the checkpoint's own names, LABEL_n included
    else:
        labels = _labels_from(cfg_json, n_cls)  # older folders with "class_names"
        if labels is not None:
            model.class_names = labels

    head = model.cfg.head
    origin_key = checkpoint_origin(detected, base.version, head, recipe)
    pre, pre_source = user_preset, "argument"
    if pre is None and pre_json:
        try:
            pre, pre_source = Preprocess.from_hf_config(pre_json), "preprocessor_config.json"
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{origin}: preprocessor_config.json: {e}") from None
    if pre is None and isinstance(cfg_json.get("preprocess"), dict):
        p = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg_json["preprocess"].items()}
        try:
            pre, pre_source = Preprocess(**p), "config.json"
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{origin}: config.json 'preprocess': {e}") from None
    if pre is None and cfg_json.get("pretrained_cfg"):
        try:
            pre, pre_source = Preprocess.from_timm_cfg(cfg_json["pretrained_cfg"]), "config.json pretrained_cfg"
        except (ValueError, TypeError, KeyError):
            pre = None    # a timm cfg this package cannot mirror: the origin's preset
    if pre is None:
        pre, pre_source = preset_for_origin(origin_key), f"origin: {ORIGIN_PRESETS[origin_key][0]}"
    import dataclasses
    pc = {
        "source": origin, "scheme": detected, "architecture": name,
        "requested": os.fspath(requested) if isinstance(requested, (str, os.PathLike)) else "mapping",
        "image_size": cfg_json.get("image_size") or (cfg_json.get("pretrained_cfg") or {}).get("input_size"),
        "preprocessor_config": pre_json,
        "pretrained_cfg": cfg_json.get("pretrained_cfg"),
        "origin": origin_key,
        "preprocess": dataclasses.asdict(pre),
        "preprocess_source": pre_source,
    }
    if head == "deeplabv3":
        pc["sources"] = sources
        pc["recipe"] = recipe
        pc["recipe_note"] = note
        if isinstance(cfg_json.get("align_corners"), bool):
            pc["align_corners"] = cfg_json["align_corners"]
        else:   # ml-cvnets v0.2+ upsamples its logits with align_corners=True; v0.1 and HF with False
            pc["align_corners"] = origin_key in ("cvnets_v2_deeplab", "cvnets_v2_deeplab_v1")
    if result.ignored_keys:
        pc["ignored"] = {"keys": list(result.ignored_keys),
                         "why": "ml-cvnets' auxiliary segmentation head on layer 4 (use_aux_head): a "
                                "training-only branch its forward() skips in eval mode"}
    model.pretrained_cfg = pc
    return model


def _looks_nested(sd: Mapping) -> bool:
    return any(isinstance(v, Mapping) for v in sd.values())


__all__ = ["from_pretrained", "save", "infer_variant"]


from . import model as _model  # noqa: E402  (one-way: hub -> model)
_model._register_pretrained_loader(from_pretrained)
