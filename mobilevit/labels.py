"""Class names for a checkpoint's outputs (issue 13, item 6).

The rule, as transformers' pipeline applies it: a checkpoint's own labels are
what is printed, even the ``LABEL_<n>`` placeholders transformers writes when a
model was trained without names.  Only a checkpoint with no labels at all and
1000 outputs gets the ImageNet-1k names, and then ``assumed`` is True so the
output can say the names were assumed; otherwise ``class_<i>``.
"""
from __future__ import annotations

import re
import os
from typing import List, Mapping, Optional, Tuple

_IMAGENET_FILE = os.path.join(os.path.dirname(__file__), "data", "imagenet1k_labels.txt")


def imagenet_labels() -> List[str]:
    """The 1000 ImageNet-1k class names in the usual index order (sorted
    WordNet ids), as HF's id2label and timm's ImageNetInfo give them."""
    with open(_IMAGENET_FILE, "r", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    return [r[1] if len(r) > 1 else r[0] for r in rows]

__all__ = ["class_names", "model_class_names", "imagenet_labels"]

_INT = re.compile(r"[0-9]+")


def _index(key, field: str) -> int:
    if isinstance(key, bool):
        raise ValueError(f"{field}: key {key!r} is not a class index")
    if isinstance(key, int):
        i = key
    elif isinstance(key, str) and _INT.fullmatch(key.strip()):
        i = int(key)
    else:
        raise ValueError(f"{field}: key {key!r} is not a class index (an int or a string of digits)")
    if i < 0:
        raise ValueError(f"{field}: negative class index {i}")
    return i


def _from_id2label(id2label, num_classes: int) -> List[str]:
    if not isinstance(id2label, Mapping):
        raise ValueError(f"config id2label must be a mapping of class index to name, got {type(id2label).__name__}")
    names = {}
    for k, v in id2label.items():
        i = _index(k, "config id2label")
        if i in names:
            raise ValueError(f"config id2label: class index {i} appears twice")
        if not isinstance(v, str):
            raise ValueError(f"config id2label[{k!r}] must be a string, got {type(v).__name__}")
        names[i] = v
    missing = [i for i in range(num_classes) if i not in names]
    extra = sorted(i for i in names if i >= num_classes)
    if missing or extra:
        raise ValueError(f"config id2label does not match the {num_classes} outputs: "
                         + (f"missing indices {missing[:10]}{' ...' if len(missing) > 10 else ''}" if missing else "")
                         + ("; " if missing and extra else "")
                         + (f"indices beyond the outputs {extra[:10]}" if extra else ""))
    return [names[i] for i in range(num_classes)]


def _from_label_names(label_names, descriptions, num_classes: int) -> List[str]:
    if not isinstance(label_names, (list, tuple)) or not all(isinstance(x, str) for x in label_names):
        raise ValueError("config label_names must be a list of strings")
    if len(label_names) != num_classes:
        raise ValueError(f"config label_names has {len(label_names)} names for {num_classes} outputs")
    if descriptions is None:
        return list(label_names)
    if not isinstance(descriptions, Mapping) or not all(isinstance(v, str) for v in descriptions.values()):
        raise ValueError("config label_descriptions must be a mapping of label name to string")
    # timm: label_names are ids (e.g. WordNet synsets), label_descriptions their readable names
    return [descriptions.get(n, n) for n in label_names]


def class_names(config: Optional[Mapping], num_classes: int) -> Tuple[List[str], bool]:
    """``(names, assumed)`` for a classifier with ``num_classes`` outputs.

    * ``config["id2label"]`` (transformers; keys ints or digit strings) when
      present — printed as is, ``LABEL_<n>`` included;
    * else ``config["label_names"]`` (timm's ``save_for_hf`` and
      :meth:`MobileViT.save`), mapped through ``label_descriptions`` when given;
    * else the ImageNet-1k names for 1000 outputs (``assumed=True``);
    * else ``class_0`` ... (``assumed=False``: placeholders, not guesses).

    A malformed field (id2label not a mapping, a non-integer key, a missing
    index, a non-string name, a length that disagrees with ``num_classes``)
    raises ``ValueError`` naming the field.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping or None, got {type(config).__name__}")
    config = config or {}
    if config.get("id2label") is not None:
        return _from_id2label(config["id2label"], num_classes), False
    if config.get("label_names") is not None:
        return _from_label_names(config["label_names"], config.get("label_descriptions"), num_classes), False
    if num_classes == 1000:
        return imagenet_labels(), True
    return [f"class_{i}" for i in range(num_classes)], False


def model_class_names(model) -> Tuple[List[str], bool]:
    """``(names, assumed)`` for a model's outputs — the one rule the predictor, the CLI and the
    notebook pictures use: ``model.class_names`` when set (the checkpoint's own labels, as
    :func:`mobilevit.from_pretrained` read them, or the user's), else :func:`class_names` with no
    config: the ImageNet-1k names for 1000 outputs (``assumed=True``), else ``class_<i>``."""
    names = getattr(model, "class_names", None)
    if names:
        return list(names), False
    return class_names(None, int(model.num_classes))
