"""Architecture configurations of the MobileViT family (spec section 1).

A config is plain data: the model builder turns it into graph nodes, the
key mapper into expected parameter names.  Numbers follow ml-cvnets'
``mobilevit.py`` configs, which timm and transformers reproduce.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Tuple


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``),
    adding one step if rounding lost more than 10 % (as ml-cvnets/timm/HF do)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class MobileViTBlockCfg:
    channels: int        # C: CNN channels of the block (and of its stride-2 MV2)
    dim: int             # d: transformer width
    depth: int           # L: transformer layers
    heads: int = 4
    mlp_ratio: float = 2.0
    patch_size: int = 2


@dataclass(frozen=True)
class MobileViTConfig:
    name: str
    stem_channels: int
    layer1: Tuple[int, ...]          # output channels of the MV2 blocks of layer 1
    layer2: Tuple[int, ...]          # ... of layer 2 (first has stride 2)
    blocks: Tuple[MobileViTBlockCfg, MobileViTBlockCfg, MobileViTBlockCfg]
    expansion: float                 # MV2 expansion ratio
    final_channels: int              # conv_1x1_exp output (min(4*C5, 960))
    num_classes: int = 1000
    in_channels: int = 3
    bn_eps: float = 1e-5
    ln_eps: float = 1e-5
    version: int = 1                 # 1: MobileViT, 2: MobileViTv2 (separable attention)
    # v2 only, feature maps with an odd side: "resize" = timm / ml-cvnets (block input resized
    # up with align_corners=True, the network continues at the even size); "crop" = HF
    # transformers (unfold drops the last row/column, fold writes zeros there)
    odd_size: str = "resize"
    output_stride: int = 32          # 16 or 8: dilated layer 5 (and 4), for segmentation
    dilate_block_conv: bool = False  # v2 ml-cvnets segmentation dilates the block's local conv
    head: str = "classifier"         # "classifier" or "deeplabv3"
    aspp_channels: int = 256
    aspp_rates: Tuple[int, int, int] = (6, 12, 18)
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self):
        """The configuration as plain JSON-ready values (what ``model.save`` writes)."""
        return asdict(self)


_B = MobileViTBlockCfg

MODEL_CONFIGS = {
    "mobilevit_xxs": MobileViTConfig(
        "mobilevit_xxs", 16, (16,), (24, 24, 24),
        (_B(48, 64, 2), _B(64, 80, 4), _B(80, 96, 3)), expansion=2.0, final_channels=320),
    "mobilevit_xs": MobileViTConfig(
        "mobilevit_xs", 16, (32,), (48, 48, 48),
        (_B(64, 96, 2), _B(80, 120, 4), _B(96, 144, 3)), expansion=4.0, final_channels=384),
    "mobilevit_s": MobileViTConfig(
        "mobilevit_s", 16, (32,), (64, 64, 64),
        (_B(96, 144, 2), _B(128, 192, 4), _B(160, 240, 3)), expansion=4.0, final_channels=640),
}


def _clip(v, lo, hi):
    return max(lo, min(hi, v))


def _v2(alpha: float) -> MobileViTConfig:
    """MobileViTv2 at width multiplier alpha (spec 8.1)."""
    md = make_divisible
    stem = md(_clip(32 * alpha, 16, 64), 8, 16)
    l1, l2 = md(64 * alpha, 16), md(128 * alpha, 8)
    chans = [md(c * alpha, 8) for c in (256, 384, 512)]
    dims = [md(d * alpha, 8) for d in (128, 192, 256)]
    name = f"mobilevitv2_{int(round(alpha * 100)):03d}"
    blocks = tuple(_B(c, d, L, heads=1) for c, d, L in zip(chans, dims, (2, 4, 3)))
    return MobileViTConfig(name, stem, (l1,), (l2, l2), blocks, expansion=2.0, final_channels=0,
                           version=2)


for _alpha in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0):
    _c = _v2(_alpha)
    MODEL_CONFIGS[_c.name] = _c

# names users of the three ecosystems type
ALIASES = {
    "mobilevit_xx_small": "mobilevit_xxs", "mobilevit-xx-small": "mobilevit_xxs",
    "apple/mobilevit-xx-small": "mobilevit_xxs", "xxs": "mobilevit_xxs",
    "mobilevit_x_small": "mobilevit_xs", "mobilevit-x-small": "mobilevit_xs",
    "apple/mobilevit-x-small": "mobilevit_xs", "xs": "mobilevit_xs",
    "mobilevit_small": "mobilevit_s", "mobilevit-small": "mobilevit_s",
    "apple/mobilevit-small": "mobilevit_s", "s": "mobilevit_s",
}


def list_models(segmentation: bool = True):
    """Names accepted by :func:`mobilevit.create_model`: the backbones
    (classifiers, ``features_only``) and, with ``segmentation=True``,
    ``deeplabv3_<backbone>`` for each."""
    names = sorted(MODEL_CONFIGS)
    return names + [f"deeplabv3_{n}" for n in names] if segmentation else names


for _alpha in ("0.5", "0.75", "1.0", "1.25", "1.5", "1.75", "2.0"):
    _n = f"mobilevitv2_{int(round(float(_alpha) * 100)):03d}"
    ALIASES[f"apple/mobilevitv2-{_alpha}-imagenet1k-256"] = _n
    ALIASES[f"mobilevitv2-{_alpha}"] = _n
ALIASES["deeplabv3_mobilevit_s"] = "mobilevit_s"
ALIASES["deeplabv3_mobilevit_xs"] = "mobilevit_xs"
ALIASES["deeplabv3_mobilevit_xxs"] = "mobilevit_xxs"


def get_config(name: str) -> MobileViTConfig:
    """The architecture of a model name (or alias), as create_model builds it."""
    key = name.lower()
    key = ALIASES.get(key, key)
    for suffix in (".cvnets_in1k", ".in1k", ".cvnets_in22k_ft_in1k", ".cvnets_in22k_ft_in1k_384"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    if key not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return MODEL_CONFIGS[key]
