"""Preprocessing presets that reproduce each MobileViT ecosystem's eval transform, in NumPy + Pillow.

Output: ``float32`` CHW arrays (``Preprocess.__call__``) or NCHW batches (``Preprocess.batch``).

Presets (``Preprocess.from_name``; spec section 5, ecosystem notes A.4):

* ``hf`` — transformers ``MobileViTImageProcessor`` as the conversion script configures it for the
  apple checkpoints: short side 288, PIL bilinear, centre crop 256 (floor offsets), /255, **BGR**.
* ``timm`` — ``timm.data.create_transform`` for ``mobilevit_*``: short side ⌊256/0.9⌋ = 284, PIL
  bicubic, ``CenterCrop(256)`` (round-half-even offsets), /255, RGB, mean 0 / std 1.
* ``cvnets`` — ml-cvnets v0.1 eval, which produced the v1 weights' reported accuracy: short side 288
  with OpenCV ``INTER_LINEAR`` (no antialiasing), crop 256 (floor), /255, **BGR**.
* ``timm_v2`` — timm ``mobilevitv2_*``: ⌊256/0.888⌋ = 288, bicubic, crop 256 (round), RGB.
* ``cvnets_v2`` — ml-cvnets v0.2+ (PIL) eval: 288 bicubic, crop 256 (floor), /255, RGB.
* ``hf_seg`` — transformers' DeepLabv3 checkpoints: short side 544, bilinear, crop 512, BGR.
* ``cvnets_seg`` — ml-cvnets v0.1 segmentation eval: OpenCV bilinear to 512x512, BGR.
* ``cvnets_v2_seg`` / ``cvnets_v2_seg_bilinear`` — ml-cvnets v0.2+ segmentation eval: short side 512
  (bicubic / bilinear), no crop, RGB.

:data:`ORIGIN_PRESETS` says which preset a checkpoint of each origin gets by default.

Pipeline (fixed order; ``resize_shortest``/``resize_size``, ``crop`` and ``rescale`` can each be
``None`` to skip that step):

1. ``load_image`` (path / bytes / PIL / ndarray -> RGB PIL; see ``mobilevit.imageio``).
2. Resize. ``resize_shortest=N``: the short side becomes N and the long side
   ``int(N * long / short)`` (truncated — transformers, torchvision and ml-cvnets all truncate).
   ``resize_size=(h, w)``: resize to exactly that size (HF ``{"height", "width"}`` sizes, timm
   ``crop_mode="squash"``). PIL filters (``nearest``, ``bilinear``, ``bicubic``, ``lanczos``,
   ``box``, ``hamming``) go through ``PIL.Image.resize`` exactly as transformers and torchvision do,
   so they antialias when downscaling. ``cv2_linear`` is a NumPy re-implementation of OpenCV's
   ``cv2.resize(..., INTER_LINEAR)`` for uint8 images (no antialiasing; see
   ``resize_cv2_linear``).
3. Centre crop to ``crop=(h, w)``; offsets ``⌊(H-h)/2⌋`` (``crop_rounding="floor"``: transformers,
   ml-cvnets) or ``round((H-h)/2)`` half-to-even (``"round"``: torchvision ``CenterCrop``, used by
   timm). A crop larger than the image pads with zeros, placed as each reference does (floor puts
   the image at offset ``ceil(pad/2)``, round at ``floor(pad/2)``). ml-cvnets never pads (its
   crop is a plain slice), but its 288/256 settings never need to.
4. Rescale: ``float32(float64(pixel) * rescale)``. For ``rescale=1/255`` this is bit-identical to
   transformers' float64 multiply-then-cast *and* to torchvision's float32 ``x / 255`` (checked for
   all 256 values in the tests).
5. Channel order: ``"BGR"`` reverses the channels (transformers ``do_flip_channel_order``).
6. Normalise ``(x - mean) / std`` in float32 (torchvision order); skipped when mean is 0 and std 1.
   ``mean``/``std`` are given per *output* channel (i.e. in ``channel_order``).

Memory: a tiny file can claim a huge size after resizing (a 100-byte 20000x1 PNG resized to a
short side of 288 becomes 288x5760000, ~11 GB of buffers) and a config can ask for a huge crop.
Each image's working set (resize buffers, crop, float output) is estimated before anything is
allocated (``Preprocess.memory_estimate``) and an image above the limit
(``set_memory_limit``, default 1 GiB per image) is refused with a ``PreprocessLimitError`` that
states the estimate; a configuration whose *smallest possible* working set is above the limit
(``crop``/``resize_size``/``resize_shortest`` of 10**6, ...) is refused when it is built.
Normal images take exactly the same path as before (no approximation).

Images with an alpha channel: ``load_image`` composites them on white by default, whereas
transformers and timm call ``convert("RGB")``; for parity on such files load them with
``load_image(x, background=None)`` and pass the result in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .imageio import load_image

__all__ = ["Preprocess", "PRESETS", "ORIGIN_PRESETS", "preset_for_origin", "available_presets", "center_crop", "center_crop_offsets", "resize_cv2_linear",
           "PreprocessLimitError", "set_memory_limit", "get_memory_limit", "DEFAULT_MEMORY_LIMIT"]

_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_PIL_CODE_TO_NAME = {int(code): name for name, code in _PIL_FILTERS.items()}
INTERPOLATIONS = tuple(_PIL_FILTERS) + ("cv2_linear",)

Size2 = Tuple[int, int]


# -------------------------------------------------------------------------------- memory bound

DEFAULT_MEMORY_LIMIT = 1 << 30      # bytes of working set per image
_memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT

# Bytes per pixel of the buffers each step allocates, measured with tracemalloc on the code below
# (rounded up) plus Pillow's own image memory, which tracemalloc cannot see (4 bytes per RGB pixel).
_PIL_BYTES_PER_PX = 4 + 6           # Pillow's resized image + np.asarray of it
_PIL_PASS_BYTES_PER_PX = 4          # Pillow's first-pass (horizontal) image when both axes change
_CV2_BYTES_PER_PX = 80              # int32 passes of resize_cv2_linear, per output pixel (73..77 measured)
_CV2_ROW_BYTES_PER_PX = 30          # its horizontal pass over the source rows it reads, per (row x out_w)
_FLOAT_BYTES_PER_PX = 15            # transposed uint8 copy + float32 CHW output
_NORM_BYTES_PER_PX = 24             # (x - mean) / std temporaries


class PreprocessLimitError(ValueError):
    """Preprocessing an image (or any image, for a configuration) would need more memory than
    the limit set with :func:`set_memory_limit`."""


def set_memory_limit(max_bytes: Optional[int]) -> None:
    """Largest working set one image's preprocessing may need, in bytes (``None``: no limit).
    Default :data:`DEFAULT_MEMORY_LIMIT` (1 GiB).  Applies to images processed from now on and
    to configurations built from now on."""
    global _memory_limit
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or int(max_bytes) != max_bytes or max_bytes <= 0:
            raise ValueError(f"memory limit must be a positive number of bytes or None, got {max_bytes!r}")
        max_bytes = int(max_bytes)
    _memory_limit = max_bytes


def get_memory_limit() -> Optional[int]:
    """The per-image working-set limit of preprocessing in bytes (None: no limit)."""
    return _memory_limit


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _as_size2(value, field: str) -> Optional[Size2]:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be an int or an (h, w) pair, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{field} must be positive, got {(h, w)}")
    return (h, w)


def _as_triple(value, field: str) -> Tuple[float, float, float]:
    if isinstance(value, (int, float)):
        value = (value,) * 3
    out = tuple(float(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"{field} needs 3 values (one per channel), got {value!r}")
    return out


@dataclass(frozen=True)
class Preprocess:
    """An eval-time preprocessing pipeline; call it on an image to get a CHW float32 array.

    Fields: ``resize_shortest`` (short-side length, or None), ``crop`` ((h, w) or int, or None),
    ``interpolation`` (PIL filter name or ``"cv2_linear"``), ``channel_order`` (``"RGB"``/``"BGR"``),
    ``mean``/``std`` (per output channel), ``rescale`` (pixel factor, or None for 0..255),
    ``crop_rounding`` (``"floor"``/``"round"``), ``resize_size`` (exact (h, w) resize instead of
    ``resize_shortest``), ``crop_pct`` (timm's crop fraction; only used by ``resized``), ``name``.

    Every field can be overridden: ``Preprocess.from_name("hf", crop=224)``,
    ``p.replace(channel_order="RGB")``. Instances are immutable and hashable.
    """

    resize_shortest: Optional[int] = 288
    crop: Optional[Size2] = (256, 256)
    interpolation: str = "bilinear"
    channel_order: str = "BGR"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    rescale: Optional[float] = 1.0 / 255.0
    crop_rounding: str = "floor"
    resize_size: Optional[Size2] = None
    crop_pct: Optional[float] = None
    name: Optional[str] = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.resize_shortest is not None:
            if isinstance(self.resize_shortest, bool) or int(self.resize_shortest) != self.resize_shortest \
                    or self.resize_shortest <= 0:
                raise ValueError(f"resize_shortest must be a positive int or None, got {self.resize_shortest!r}")
            set_("resize_shortest", int(self.resize_shortest))
        set_("resize_size", _as_size2(self.resize_size, "resize_size"))
        if self.resize_shortest is not None and self.resize_size is not None:
            raise ValueError("set at most one of resize_shortest (short-side resize) and resize_size (exact resize)")
        set_("crop", _as_size2(self.crop, "crop"))
        interp = str(self.interpolation).lower()
        if interp not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        set_("interpolation", interp)
        order = str(self.channel_order).upper()
        if order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        set_("channel_order", order)
        set_("mean", _as_triple(self.mean, "mean"))
        set_("std", _as_triple(self.std, "std"))
        if any(s == 0.0 or not math.isfinite(s) for s in self.std):
            raise ValueError(f"std must be finite and non-zero, got {self.std}")
        if self.rescale is not None:
            set_("rescale", float(self.rescale))
        if self.crop_rounding not in ("floor", "round"):
            raise ValueError(f"crop_rounding must be 'floor' or 'round', got {self.crop_rounding!r}")
        if self.crop_pct is not None and not (0.0 < float(self.crop_pct) <= 4.0):
            raise ValueError(f"crop_pct must be in (0, 4], got {self.crop_pct!r}")
        self._check_config_memory()

    def _check_config_memory(self) -> None:
        """Refuse a configuration whose smallest possible per-image working set is above the limit
        (a crop / resize of 10**6 needs terabytes for every image, so no image could pass)."""
        limit = _memory_limit
        if limit is None:
            return
        if self.resize_size is not None:
            rh, rw = self.resize_size
        elif self.resize_shortest is not None:   # the smallest resize it can produce: a square image
            rh = rw = self.resize_shortest
        else:
            rh = rw = 1
        out = self.crop if self.crop is not None else (rh, rw)
        need = self._resize_bytes(rh, rw, rh, rw, exact=False) + self._float_bytes(*out)
        if need > limit:
            sizes = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("resize_shortest", "resize_size", "crop")
                              if getattr(self, k) is not None)
            raise PreprocessLimitError(
                f"preprocessing with {sizes} would need at least {_fmt_bytes(need)} per image "
                f"(resize to >= {rh}x{rw}, output {out[0]}x{out[1]}); the limit is {_fmt_bytes(limit)} "
                "(mobilevit.preprocess.set_memory_limit)")

    def _resize_bytes(self, height: int, width: int, th: int, tw: int, exact: bool = True) -> int:
        """Bytes the resize step allocates for a ``height`` x ``width`` input resized to ``th`` x ``tw``."""
        if exact and (th, tw) == (height, width):
            return 0 if self.interpolation == "cv2_linear" else 6 * th * tw
        if self.interpolation == "cv2_linear":
            return _CV2_BYTES_PER_PX * th * tw + _CV2_ROW_BYTES_PER_PX * min(height, 2 * th) * tw
        first_pass = _PIL_PASS_BYTES_PER_PX * tw * height if (th != height and tw != width) else 0
        return _PIL_BYTES_PER_PX * th * tw + first_pass

    def _float_bytes(self, oh: int, ow: int) -> int:
        per_px = _FLOAT_BYTES_PER_PX
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            per_px += _NORM_BYTES_PER_PX
        return per_px * oh * ow

    def memory_estimate(self, height: int, width: int) -> int:
        """Upper estimate, in bytes, of the buffers ``self(image)`` allocates for a ``height`` x
        ``width`` image (besides the decoded image itself): resize, crop padding, float output."""
        th, tw = self.resize_target(height, width)
        need = self._resize_bytes(height, width, th, tw)
        oh, ow = (th, tw) if self.crop is None else self.crop
        if self.crop is not None and (oh > th or ow > tw):
            need += 3 * oh * ow                     # zero-padded crop
        return need + self._float_bytes(oh, ow)

    def check_memory(self, height: int, width: int, name: str = "image") -> None:
        """Raise :class:`PreprocessLimitError` (stating the estimate) if a ``height`` x ``width``
        image would need more than the memory limit."""
        limit = _memory_limit
        if limit is None:
            return
        need = self.memory_estimate(height, width)
        if need > limit:
            th, tw = self.resize_target(height, width)
            if self.resize_size is not None:
                rule = f"resize_size={self.resize_size}"
            elif self.resize_shortest is not None:
                rule = f"short side {self.resize_shortest}"
            else:
                rule = "no resize"
            raise PreprocessLimitError(
                f"{name}: {height}x{width} (h x w) image, resize to {th}x{tw} ({rule}) would need "
                f"{_fmt_bytes(need)}; the limit is {_fmt_bytes(limit)} per image "
                "(mobilevit.preprocess.set_memory_limit)")

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "Preprocess":
        """A named preset (``hf``, ``timm``, ``cvnets``, ``timm_v2``, ``cvnets_v2``, ``hf_seg``, ``cvnets_seg``,
        ``cvnets_v2_seg``, ``cvnets_v2_seg_bilinear``) with fields replaced.

        Overrides are applied literally (``crop=224`` keeps the preset's resize); use
        ``.resized(h, w)`` to move the whole pipeline to another resolution with the preset's rule.
        """
        key = str(name).lower().replace("-", "_")
        if key not in PRESETS:
            raise ValueError(f"unknown preprocessing preset {name!r}; available: {', '.join(sorted(PRESETS))}")
        return PRESETS[key].replace(**overrides)

    @classmethod
    def from_hf_config(cls, config: Union[Mapping[str, Any], str, "os.PathLike[str]"]) -> "Preprocess":
        """Mirror a transformers ``preprocessor_config.json`` (dict or path) for ``MobileViTImageProcessor``.

        Missing keys take the class defaults of ``MobileViTImageProcessor`` (shortest_edge 224,
        bilinear, rescale 1/255, crop 256x256, flip to BGR). ``do_normalize`` with
        ``image_mean``/``image_std`` is honoured for other processors of the same shape.
        """
        if isinstance(config, (str, os.PathLike)):
            with open(config, "r", encoding="utf-8") as fh:
                config = json.load(fh)
        cfg = dict(config)
        kwargs: Dict[str, Any] = {"name": "hf_config", "crop_rounding": "floor"}

        if cfg.get("do_resize", True):
            size = cfg.get("size", {"shortest_edge": 224})
            if isinstance(size, (int, float)):
                size = {"shortest_edge": int(size)}
            elif isinstance(size, (list, tuple)):
                size = {"height": int(size[0]), "width": int(size[-1])}
            if "shortest_edge" in size and size.get("longest_edge") is None:
                kwargs["resize_shortest"] = int(size["shortest_edge"])
            elif "height" in size and "width" in size:
                kwargs["resize_shortest"] = None
                kwargs["resize_size"] = (int(size["height"]), int(size["width"]))
            else:
                raise ValueError(f"unsupported HF size specification {size!r}")
        else:
            kwargs["resize_shortest"] = None

        resample = cfg.get("resample", int(Image.Resampling.BILINEAR))
        if isinstance(resample, str):
            kwargs["interpolation"] = resample.lower()
        else:
            if int(resample) not in _PIL_CODE_TO_NAME:
                raise ValueError(f"unsupported PIL resample code {resample!r}")
            kwargs["interpolation"] = _PIL_CODE_TO_NAME[int(resample)]

        kwargs["rescale"] = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else None

        if cfg.get("do_center_crop", True):
            crop = cfg.get("crop_size", {"height": 256, "width": 256})
            if isinstance(crop, Mapping):
                crop = (int(crop["height"]), int(crop["width"]))
            kwargs["crop"] = crop
        else:
            kwargs["crop"] = None

        kwargs["channel_order"] = "BGR" if cfg.get("do_flip_channel_order", True) else "RGB"
        if cfg.get("do_normalize", False):
            mean, std = cfg.get("image_mean"), cfg.get("image_std")
            if mean is None or std is None:
                raise ValueError("do_normalize is set but image_mean/image_std are missing")
            kwargs["mean"], kwargs["std"] = mean, std
        return cls(**kwargs)

    @classmethod
    def from_timm_cfg(cls, cfg: Mapping[str, Any]) -> "Preprocess":
        """Mirror timm's eval transform for a ``pretrained_cfg`` / ``resolve_data_config`` dict.

        Accepts the dict itself or a timm hub ``config.json`` holding it under ``pretrained_cfg``.
        Supports ``crop_mode`` ``"center"`` (square ``input_size``) and ``"squash"``.
        """
        cfg = dict(cfg)
        if "pretrained_cfg" in cfg and "input_size" not in cfg:
            cfg = dict(cfg["pretrained_cfg"])
        input_size = cfg.get("input_size", (3, 224, 224))
        h, w = int(input_size[-2]), int(input_size[-1])
        crop_pct = float(cfg.get("crop_pct") or 0.875)  # timm DEFAULT_CROP_PCT
        crop_mode = cfg.get("crop_mode") or "center"
        interpolation = str(cfg.get("interpolation", "bilinear")).lower()
        if interpolation not in _PIL_FILTERS:
            raise ValueError(f"timm interpolation {interpolation!r} has no deterministic eval equivalent")
        common = dict(
            crop=(h, w), interpolation=interpolation, channel_order="RGB", rescale=1 / 255,
            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
            crop_rounding="round", crop_pct=crop_pct, name="timm_cfg",
        )
        if crop_mode == "center":
            if h != w:
                raise ValueError(
                    "timm uses ResizeKeepRatio for non-square input_size with crop_mode='center'; not supported"
                )
            return cls(resize_shortest=math.floor(h / crop_pct), **common)
        if crop_mode == "squash":
            return cls(resize_shortest=None, resize_size=(math.floor(h / crop_pct), math.floor(w / crop_pct)), **common)
        raise ValueError(f"timm crop_mode {crop_mode!r} is not supported (use 'center' or 'squash')")

    # ---------------------------------------------------------------- variants

    def replace(self, **changes: Any) -> "Preprocess":
        """A copy with some fields changed (``dataclasses.replace``)."""
        if "resize_size" in changes and changes["resize_size"] is not None and "resize_shortest" not in changes:
            changes["resize_shortest"] = None
        if "resize_shortest" in changes and changes["resize_shortest"] is not None and "resize_size" not in changes:
            changes["resize_size"] = None
        return dataclasses.replace(self, **changes)

    def resized(self, h: int, w: int, *, resize_shortest: Optional[int] = None) -> "Preprocess":
        """The same pipeline producing an ``h`` x ``w`` output (multi-scale evaluation / sampler sizes).

        The crop becomes ``(h, w)``; the resize keeps the preset's rule:

        * with ``crop_pct`` (timm): short side ``floor(max(h, w) / crop_pct)``
          (exact resize: ``floor(h / crop_pct)``, ``floor(w / crop_pct)``), as timm computes it;
        * otherwise the additive margin is kept, ``max(h, w) + (resize_shortest - max(crop))`` — the
          ml-cvnets / transformers convention "resize = crop + 32" (288/256, 544/512);
        * no resize configured: crop only. No crop configured: resize exactly to ``(h, w)``.

        ``resize_shortest=`` overrides the computed short side.
        """
        h, w = _as_size2((h, w), "size")
        if resize_shortest is not None:
            return self.replace(crop=(h, w), resize_shortest=resize_shortest, resize_size=None)
        if self.crop is None:
            return self.replace(resize_shortest=None, resize_size=(h, w))
        if self.resize_size is not None:
            if self.crop_pct is not None:
                size = (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))
            else:
                size = (h + self.resize_size[0] - self.crop[0], w + self.resize_size[1] - self.crop[1])
            return self.replace(crop=(h, w), resize_size=size)
        if self.resize_shortest is None:
            return self.replace(crop=(h, w))
        if self.crop_pct is not None:
            short = math.floor(max(h, w) / self.crop_pct)
        else:
            short = max(h, w) + self.resize_shortest - max(self.crop)
        return self.replace(crop=(h, w), resize_shortest=max(1, short))

    # ---------------------------------------------------------------- running

    @property
    def output_size(self) -> Optional[Size2]:
        """(h, w) of every output, or None when it depends on the input image."""
        if self.crop is not None:
            return self.crop
        return self.resize_size

    def resize_target(self, height: int, width: int) -> Size2:
        """(h, w) the resize step produces for an input of ``height`` x ``width``."""
        if self.resize_size is not None:
            return self.resize_size
        if self.resize_shortest is None:
            return (height, width)
        n = self.resize_shortest
        if width <= height:
            return (int(n * height / width), n)
        return (n, int(n * width / height))

    def __call__(self, image) -> np.ndarray:
        """Preprocess one image (anything ``load_image`` accepts) into a (3, h, w) float32 array."""
        pil = load_image(image)
        self.check_memory(pil.height, pil.width, _source_name(image))
        arr = self._resize(pil)
        if self.crop is not None:
            arr = center_crop(arr, self.crop, self.crop_rounding)
        return self._to_float_chw(arr)

    def batch(self, images: Iterable) -> np.ndarray:
        """Preprocess several images into one (N, 3, h, w) float32 array (requires a fixed output size)."""
        outs = [self(img) for img in images]
        if not outs:
            raise ValueError("batch() needs at least one image")
        shapes = {o.shape for o in outs}
        if len(shapes) != 1:
            raise ValueError(
                f"images preprocess to different shapes {sorted(shapes)}; set crop or resize_size for batching"
            )
        return np.stack(outs)

    def _resize(self, pil: Image.Image) -> np.ndarray:
        width, height = pil.size
        th, tw = self.resize_target(height, width)
        if self.interpolation == "cv2_linear":
            arr = np.asarray(pil, dtype=np.uint8)
            if (th, tw) == (height, width):
                return arr  # ml-cvnets skips the call when the short side already matches
            return resize_cv2_linear(arr, th, tw)
        if (th, tw) != (height, width):
            pil = pil.resize((tw, th), resample=_PIL_FILTERS[self.interpolation])
        return np.asarray(pil, dtype=np.uint8)

    def _to_float_chw(self, hwc_u8: np.ndarray) -> np.ndarray:
        if self.rescale is None:
            lut = np.arange(256, dtype=np.float32)
        else:
            lut = (np.arange(256, dtype=np.float64) * self.rescale).astype(np.float32)
        if self.channel_order == "BGR":
            hwc_u8 = hwc_u8[..., ::-1]
        out = lut[np.ascontiguousarray(hwc_u8.transpose(2, 0, 1))]
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
            std = np.asarray(self.std, dtype=np.float32)[:, None, None]
            out = (out - mean) / std
        return np.ascontiguousarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        parts = []
        if self.name:
            parts.append(f"name={self.name!r}")
        if self.resize_shortest is not None:
            parts.append(f"resize_shortest={self.resize_shortest}")
        if self.resize_size is not None:
            parts.append(f"resize_size={self.resize_size}")
        parts.append(f"interpolation={self.interpolation!r}")
        parts.append(f"crop={self.crop}")
        if self.crop is not None:
            parts.append(f"crop_rounding={self.crop_rounding!r}")
        parts.append(f"channel_order={self.channel_order!r}")
        parts.append(f"rescale={self.rescale!r}")
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            parts.append(f"mean={self.mean}, std={self.std}")
        if self.crop_pct is not None:
            parts.append(f"crop_pct={self.crop_pct}")
        return f"Preprocess({', '.join(parts)})"


def _source_name(image) -> str:
    if isinstance(image, (str, os.PathLike)):
        return repr(os.fspath(image))
    if isinstance(image, Image.Image):
        return "PIL image"
    if isinstance(image, np.ndarray):
        return f"array of shape {image.shape}"
    return type(image).__name__


# -------------------------------------------------------------------------------- crop


def center_crop_offsets(size: int, crop: int, rounding: str = "floor") -> int:
    """Offset of the crop window along one axis (negative: the crop is larger and zero-padded).

    ``floor``: ``(size - crop) // 2`` — transformers ``center_crop`` (which pads by
    ``ceil(pad/2)`` in front, i.e. the same offset) and ml-cvnets.
    ``round``: torchvision ``CenterCrop``: ``int(round((size - crop) / 2))`` (half to even) when the
    image is large enough, else pad ``(crop - size) // 2`` in front.
    """
    if rounding == "floor":
        return (size - crop) // 2
    if size >= crop:
        return int(round((size - crop) / 2.0))
    return -((crop - size) // 2)


def center_crop(arr: np.ndarray, crop: Size2, rounding: str = "floor") -> np.ndarray:
    """Centre-crop an HWC array to ``crop=(h, w)``, zero-filling where the window leaves the image."""
    H, W = arr.shape[:2]
    ch, cw = crop
    top, left = center_crop_offsets(H, ch, rounding), center_crop_offsets(W, cw, rounding)
    if top >= 0 and left >= 0 and top + ch <= H and left + cw <= W:
        return arr[top:top + ch, left:left + cw]
    out = np.zeros((ch, cw) + arr.shape[2:], dtype=arr.dtype)
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + ch, H), min(left + cw, W)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = arr[sy0:sy1, sx0:sx1]
    return out


# -------------------------------------------------------------------------------- OpenCV bilinear

_COEF_BITS = 11                 # OpenCV INTER_RESIZE_COEF_BITS
_COEF_ONE = 1 << _COEF_BITS     # INTER_RESIZE_COEF_SCALE = 2048


def _cv2_linear_taps(src: int, dst: int):
    """Per output position: first source index, second index, and 11-bit fixed-point weights.

    Mirrors OpenCV's resizeGeneric set-up: scale = 1 / (dst / src) in double, fx computed in double
    and stored as float, floor, edge clamp (weight 0 on the missing neighbour), weights
    ``saturate_cast<short>(w * 2048)`` i.e. round-half-even of the float product.
    """
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    f = (f - i0.astype(np.float32)).astype(np.float32)
    low = i0 < 0
    f[low] = 0.0
    i0[low] = 0
    high = i0 >= src - 1
    f[high] = 0.0
    i0[high] = src - 1
    w1 = np.rint(f * np.float32(_COEF_ONE)).astype(np.int32)
    w0 = np.rint((np.float32(1.0) - f) * np.float32(_COEF_ONE)).astype(np.int32)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, w0, w1


def resize_cv2_linear(img: np.ndarray, out_h: int, out_w: int, *, simd_bytes: int = 16) -> np.ndarray:
    """``cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)`` for uint8 HW / HWC images.

    A NumPy re-implementation of OpenCV's fixed-point bilinear path (no antialiasing, half-pixel
    centres, edge replication):

    * horizontal pass: ``S[x0] * a0 + S[x1] * a1`` with 11-bit integer weights (exact in int);
    * vertical pass: OpenCV's SIMD kernel (``VResizeLinearVec_32s8u``) computes
      ``((((S0 >> 4) * b0) >> 16) + (((S1 >> 4) * b1) >> 16) + 2) >> 2`` for the first
      ``floor(n / (simd_bytes / 2)) * (simd_bytes / 2)`` values of each row (n = width * channels)
      and the scalar ``(S0 * b0 + S1 * b1 + 2**21) >> 22`` for the rest. ``simd_bytes=16`` models
      the SSE2/NEON baseline that OpenCV's wheels compile this kernel for; ``simd_bytes=0`` gives the
      pure scalar reference. The two differ by at most 1 (= 1/255 after rescaling) on a few pixels.
    * OpenCV turns an exact 2x downscale into INTER_AREA, ``(a + b + c + d + 2) >> 2``; the fixed-point
      bilinear formulas above give exactly that value for 2x, so no special case is needed (tested).

    Not verified against a live ``cv2`` (not installed in this environment); OpenCV builds that route
    resize through IPP/HAL, or newer releases with special cases (e.g. a 2x-upscale kernel), can
    differ by 1 on some pixels.
    """
    if img.dtype != np.uint8:
        raise TypeError(f"resize_cv2_linear expects uint8, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HW or HWC array, got shape {img.shape}")
    out_h, out_w = int(out_h), int(out_w)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    squeeze = img.ndim == 2
    src = img[..., None] if squeeze else img
    H, W, C = src.shape
    if H == 0 or W == 0:
        raise ValueError(f"cannot resize an empty image of shape {img.shape}")

    x0, x1, a0, a1 = _cv2_linear_taps(W, out_w)
    y0, y1, b0, b1 = _cv2_linear_taps(H, out_h)
    # Horizontal pass on the source rows that are actually read. int32 is exact: values stay
    # below 255 * 2048 here and below 2**31 in the vertical pass, as in OpenCV.
    rows, inverse = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    src_rows = src[rows]
    horiz = (src_rows[:, x0, :].astype(np.int32) * a0[None, :, None]
             + src_rows[:, x1, :].astype(np.int32) * a1[None, :, None])             # (rows, out_w, C)
    horiz = horiz.reshape(len(rows), out_w * C)
    r0, r1 = horiz[inverse[:out_h]], horiz[inverse[out_h:]]                         # (out_h, n)
    bb0, bb1 = b0[:, None], b1[:, None]

    n = out_w * C
    lanes16 = simd_bytes // 2
    vec_end = (n // lanes16) * lanes16 if lanes16 > 0 else 0
    out = np.empty((out_h, n), dtype=np.int32)
    if vec_end:
        out[:, :vec_end] = ((((r0[:, :vec_end] >> 4) * bb0) >> 16)
                            + (((r1[:, :vec_end] >> 4) * bb1) >> 16) + 2) >> 2
    if vec_end < n:
        out[:, vec_end:] = (r0[:, vec_end:] * bb0 + r1[:, vec_end:] * bb1 + (1 << (2 * _COEF_BITS - 1))) \
            >> (2 * _COEF_BITS)
    out = np.clip(out, 0, 255).astype(np.uint8).reshape(out_h, out_w, C)
    return out[..., 0] if squeeze else out


# -------------------------------------------------------------------------------- presets

PRESETS: Dict[str, Preprocess] = {
    "hf": Preprocess(resize_shortest=288, crop=(256, 256), interpolation="bilinear", channel_order="BGR",
                     crop_rounding="floor", name="hf"),
    "timm": Preprocess(resize_shortest=math.floor(256 / 0.9), crop=(256, 256), interpolation="bicubic",
                       channel_order="RGB", crop_rounding="round", crop_pct=0.9, name="timm"),
    "cvnets": Preprocess(resize_shortest=288, crop=(256, 256), interpolation="cv2_linear", channel_order="BGR",
                         crop_rounding="floor", name="cvnets"),
    "timm_v2": Preprocess(resize_shortest=math.floor(256 / 0.888), crop=(256, 256), interpolation="bicubic",
                          channel_order="RGB", crop_rounding="round", crop_pct=0.888, name="timm_v2"),
    "cvnets_v2": Preprocess(resize_shortest=288, crop=(256, 256), interpolation="bicubic", channel_order="RGB",
                            crop_rounding="floor", name="cvnets_v2"),
    # DeepLabv3.  transformers' conversion script saves MobileViTImageProcessor(crop_size=512,
    # size=544) with the apple/deeplabv3-mobilevit-* checkpoints (BGR as for the classifiers).
    "hf_seg": Preprocess(resize_shortest=544, crop=(512, 512), interpolation="bilinear", channel_order="BGR",
                         crop_rounding="floor", name="hf_seg"),
    # ml-cvnets v0.1 segmentation evaluation (engine/eval_segmentation.py, Resize(size=(512, 512)) in
    # data/transforms/image.py): OpenCV images (BGR), cv2.resize INTER_LINEAR to exactly 512x512.
    "cvnets_seg": Preprocess(resize_shortest=None, resize_size=(512, 512), crop=None, interpolation="cv2_linear",
                             channel_order="BGR", name="cvnets_seg"),
    # ml-cvnets v0.2+ segmentation evaluation (--evaluation.segmentation.resize-input-images): PIL RGB,
    # short side 512 keeping the aspect ratio, no crop, /255, no mean/std; the interpolation is the
    # recipe's image_augmentation.resize.interpolation: bicubic in the MobileViTv2 yamls
    # (ade20k/pascal_voc deeplabv3_mobilevitv2.yaml), bilinear in pascal_voc/deeplabv3_mobilevit.yaml.
    "cvnets_v2_seg": Preprocess(resize_shortest=512, crop=None, interpolation="bicubic", channel_order="RGB",
                                name="cvnets_v2_seg"),
    "cvnets_v2_seg_bilinear": Preprocess(resize_shortest=512, crop=None, interpolation="bilinear",
                                         channel_order="RGB", name="cvnets_v2_seg_bilinear"),
}

#: Where a checkpoint comes from -> (description, the preset its weights were evaluated with).
#: :func:`mobilevit.from_pretrained` determines the origin from the key names, the tensor shapes and
#: the head (see ``mobilevit.hub.checkpoint_origin``) and uses this preset unless the checkpoint's own
#: files say more (``preprocessor_config.json``, a timm ``pretrained_cfg``, a ``model.save`` config)
#: or the caller passes ``preset=``.
ORIGIN_PRESETS: Dict[str, Tuple[str, str]] = {
    "hf": ("HF transformers classifier (MobileViT / MobileViTV2)", "hf"),
    "hf_deeplab": ("HF transformers DeepLabv3", "hf_seg"),
    "timm": ("timm MobileViT v1", "timm"),
    "timm_v2": ("timm MobileViTv2", "timm_v2"),
    "cvnets": ("ml-cvnets MobileViT v1 (the released v0.1 weights)", "cvnets"),
    "cvnets_v2": ("ml-cvnets MobileViTv2 (v0.2+)", "cvnets_v2"),
    "cvnets_deeplab": ("ml-cvnets v0.1 DeepLabv3 on MobileViT v1 (output stride 16, ASPP 256)", "cvnets_seg"),
    "cvnets_v2_deeplab_v1": ("ml-cvnets v0.2+ DeepLabv3 on MobileViT v1", "cvnets_v2_seg_bilinear"),
    "cvnets_v2_deeplab": ("ml-cvnets v0.2+ DeepLabv3 on MobileViTv2", "cvnets_v2_seg"),
}


def preset_for_origin(origin: str) -> "Preprocess":
    """The preset of an origin key of :data:`ORIGIN_PRESETS`."""
    if origin not in ORIGIN_PRESETS:
        raise ValueError(f"unknown checkpoint origin {origin!r}; known: {', '.join(ORIGIN_PRESETS)}")
    return PRESETS[ORIGIN_PRESETS[origin][1]]


def available_presets() -> Sequence[str]:
    """Names accepted by ``Preprocess.from_name``."""
    return tuple(sorted(PRESETS))
