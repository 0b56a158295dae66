"""Writing a model in mobilevit's own format: safetensors (timm names) with the config embedded.

:func:`save_model` is what :meth:`mobilevit.model.MobileViT.save` and :func:`mobilevit.hub.save` run.
It uses only the model's attributes (``cfg``, ``class_names``, ``pretrained_cfg``, ``state_dict()``),
so it imports neither :mod:`mobilevit.model` nor :mod:`mobilevit.hub`: model -> here, hub -> here,
hub -> model, and no cycle.  :func:`mobilevit.hub.from_pretrained` reads what this writes.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

import numpy as np

from .safetensors_io import save_safetensors

__all__ = ["save_model"]


def save_model(model, path: str, metadata: Optional[Dict[str, str]] = None) -> str:
    """Write ``model``'s weights (timm names, BatchNorm unfolded) as
    safetensors.  A path ending in ``.safetensors`` is a file; otherwise a
    folder with ``model.safetensors`` + ``config.json`` (architecture, class
    names, preprocessing) is written."""
    c = model.cfg
    cfg = {"architecture": c.name, "num_classes": c.num_classes}
    pc = getattr(model, "pretrained_cfg", {}) or {}
    if c.head == "deeplabv3":
        cfg.update(output_stride=c.output_stride, atrous_rates=list(c.aspp_rates), aspp_out_channels=c.aspp_channels,
                   dilate_block_conv=bool(c.dilate_block_conv))
        if isinstance(pc.get("align_corners"), bool):
            cfg["align_corners"] = pc["align_corners"]
    if c.version == 2:
        cfg["odd_size"] = c.odd_size
    if model.class_names:
        cfg["label_names"] = list(model.class_names)
    if pc.get("preprocess"):
        cfg["preprocess"] = pc["preprocess"]
    meta = {"format": "pt", "mobilevit_config": json.dumps(cfg)}
    meta.update(metadata or {})
    tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        save_safetensors(path, tensors, meta)
        return path
    os.makedirs(path, exist_ok=True)
    save_safetensors(os.path.join(path, "model.safetensors"), tensors, meta)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return path
