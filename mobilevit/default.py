"""The bundled default model: a MobileViT-XXS really trained (with the
reference PyTorch implementation and the multi-scale sampler) on
scikit-learn's handwritten digits, shipped with a few sample images so the
CLI does something real on a machine with no downloads.  See
``benchmarks/train_default_model.py`` for how it was made."""
from __future__ import annotations

import glob
import json
import os
from typing import List

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
MODEL_FILE = os.path.join(DATA_DIR, "default_model.safetensors")
META_FILE = os.path.join(DATA_DIR, "default_model.json")
SAMPLES_DIR = os.path.join(DATA_DIR, "samples")


def metadata() -> dict:
    """The bundled model's metadata (architecture, id2label, preprocessing, accuracy)."""
    with open(META_FILE, "r", encoding="utf-8") as f:
        return json.load(f)


def load_default_model():
    """The bundled digits classifier, with its class names and preprocessing."""
    from .hub import from_pretrained
    meta = metadata()
    model = from_pretrained(MODEL_FILE, model_name=meta.get("architecture", "mobilevit_xxs"))
    id2label = meta.get("id2label") or {}
    if id2label:
        model.class_names = [id2label.get(str(i), str(i)) for i in range(model.num_classes)]
    model.pretrained_cfg["preprocess"] = meta.get("preprocess")
    model.pretrained_cfg["source"] = "bundled default (digits)"
    return model


def sample_images() -> List[str]:
    """Paths of the bundled sample digits (``digit_<d>_idx<i>.png``), sorted."""
    return sorted(glob.glob(os.path.join(SAMPLES_DIR, "*.png")))
