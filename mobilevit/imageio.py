"""Image loading: anything image-like in, an RGB ``PIL.Image`` out, or a clear error.

``load_image`` is the single entry point used by the preprocessing presets. It accepts

* a path (``str`` / ``os.PathLike``), raw encoded ``bytes`` / ``bytearray`` / ``memoryview``,
  or a binary file-like object with ``read`` — decoded with Pillow (JPEG, PNG, WebP, BMP, TIFF,
  GIF and every other format the installed Pillow can read);
* a ``PIL.Image.Image`` (already decoded);
* a ``numpy.ndarray`` in HWC (or HW) layout, taken to be **RGB** (an OpenCV BGR array must be
  flipped by the caller: ``arr[..., ::-1]``). Accepted dtypes: uint8, uint16 (scaled by 1/257),
  bool, and floating point in [0, 1] (scaled by 255 and rounded).

Rules applied to every decoded image, in this order:

1. **First frame** of animated / multi-page files (GIF, APNG, WebP, TIFF). A ``PIL.Image`` passed in
   is used at whatever frame it is on.
2. **EXIF orientation** applied with ``PIL.ImageOps.exif_transpose`` (as transformers'
   ``load_image`` does; timm's folder reader does not). A malformed EXIF block is ignored rather
   than failing the load.
3. **Mode conversion to RGB**:

   - ``RGB`` unchanged; ``1``, ``L``, ``P`` (no transparency), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``,
     ``RGBX`` via Pillow's ``convert("RGB")`` (CMYK uses Pillow's naive formula, ICC profiles are
     ignored).
   - 16/32-bit integer modes (``I;16*``, ``I``) are scaled to 8 bits (``round(v / 257)``) instead of
     being clipped at 255 as ``convert("RGB")`` would (which turns most 16-bit photos white).
     Mode ``I`` images whose values all fit in 0..255 are taken as 8-bit data. Float mode ``F`` is
     taken as [0, 1] if its maximum is <= 1, else as [0, 255]; NaN becomes 0.
   - Images with an alpha channel (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``) or a transparent
     palette index / colour key (``P``, ``L``, ``RGB`` with a ``transparency`` entry: GIF, PNG
     tRNS) are **alpha-composited onto a background, white by default** (``background=(255, 255,
     255)``): a transparent pixel's stored colour is arbitrary (often
     black), so dropping alpha shows garbage where a viewer shows background. Pass
     ``background=None`` to drop alpha exactly like ``image.convert("RGB")`` — what the
     transformers and timm pipelines do — when bit-for-bit parity with them matters.

Errors: a file that is not an image, is truncated or corrupt, or cannot be converted raises
``ImageLoadError`` (a ``ValueError``) naming the source; an image with more pixels than
``max_pixels`` (default: Pillow's ``Image.MAX_IMAGE_PIXELS``, about 89.5 M) raises
``ImageTooLargeError`` (an ``ImageLoadError``) before its pixel data is decoded — Pillow's own
decompression-bomb check only errors above twice that limit. A missing path raises the usual
``FileNotFoundError``. Wrong argument types raise ``TypeError``. Truncated files are only
detected while Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False (its default); some
libraries switch it on process-wide, after which Pillow pads truncated images with grey.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from .checkpoint import read_regular_file

__all__ = ["ImageLoadError", "ImageTooLargeError", "load_image", "ImageSource"]

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_USE_PIL_DEFAULT = object()


class ImageLoadError(ValueError):
    """The input could not be decoded or converted into an RGB image."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than the allowed maximum (decompression-bomb guard)."""


def load_image(
    source: ImageSource,
    *,
    background: Optional[Tuple[int, int, int]] = (255, 255, 255),
    exif_transpose: bool = True,
    max_pixels=_USE_PIL_DEFAULT,
) -> Image.Image:
    """Return ``source`` as a fully loaded RGB ``PIL.Image`` that owns its pixels (no open file).

    ``background``: RGB colour that transparent pixels are composited onto; ``None`` drops the
    alpha channel instead (``convert("RGB")`` semantics, for parity with transformers/timm).
    ``exif_transpose``: apply the EXIF orientation tag (also for PIL images passed in; the tag is
    removed once applied, so applying twice is harmless).
    ``max_pixels``: refuse images with more than this many pixels (``None``: no check of ours).
    Defaults to ``PIL.Image.MAX_IMAGE_PIXELS`` read at call time. Pillow's own refusal above twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` still applies (raise that global for trusted, huge images).
    """
    if background is not None:
        background = _check_background(background)
    if max_pixels is _USE_PIL_DEFAULT:
        max_pixels = Image.MAX_IMAGE_PIXELS

    if isinstance(source, Image.Image):
        name = "PIL image"
        image = source
        _check_size(image, max_pixels, name)
        try:
            image.load()
        except Exception as exc:  # lazily opened by the caller and broken
            raise ImageLoadError(f"cannot decode {name}: {type(exc).__name__}: {exc}") from exc
        return _finish(image, name, background, exif_transpose)

    if isinstance(source, np.ndarray):
        return _finish(_from_array(source), "numpy array", background, exif_transpose=False)

    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not os.path.exists(name):
            raise FileNotFoundError(f"image file not found: {name!r}")
        # Only regular files are opened (a FIFO would block forever on open, /dev/zero never ends):
        # os.stat first, then O_NONBLOCK + fstat on the descriptor; the bytes are read once.
        try:
            data = read_regular_file(name, what="image file", error=ImageLoadError)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"image file not found: {name!r}") from exc
        except OSError as exc:
            raise ImageLoadError(f"cannot read image file {name!r}: {exc}") from exc
        return _decode(io.BytesIO(data), repr(name), background, exif_transpose, max_pixels)

    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageLoadError("cannot decode image from bytes: the buffer is empty")
        return _decode(io.BytesIO(data), f"<{len(data)} bytes>", background, exif_transpose, max_pixels)

    if hasattr(source, "read"):
        name = repr(getattr(source, "name", "<file object>"))
        return _decode(source, name, background, exif_transpose, max_pixels)

    raise TypeError(
        "load_image expects a path, bytes, a binary file object, a PIL.Image or a numpy array; "
        f"got {type(source).__name__}"
    )


# --------------------------------------------------------------------------------------------
# internals
# --------------------------------------------------------------------------------------------


def _check_background(background) -> Tuple[int, int, int]:
    if isinstance(background, (str, bytes)):
        raise TypeError(f"background must be an (R, G, B) tuple of ints or None, got {background!r}")
    try:
        bg = tuple(int(v) for v in background)
    except (TypeError, ValueError):
        raise TypeError(f"background must be an (R, G, B) tuple of ints or None, got {background!r}") from None
    if len(bg) != 3 or not all(0 <= v <= 255 for v in bg):
        raise ValueError(f"background must be three integers in 0..255, got {background!r}")
    return bg


def _check_size(image: Image.Image, max_pixels: Optional[int], name: str) -> None:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} (decompression-bomb guard; raise it with max_pixels=... or "
            "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted)"
        )


def _decode(fh, name: str, background, exif_transpose: bool, max_pixels) -> Image.Image:
    try:
        with Image.open(fh) as image:
            _check_size(image, max_pixels, f"image {name}")
            # Image.open leaves multi-frame files on frame 0; n_frames is not queried because
            # for GIF it scans the whole file.
            image.load()
            return _finish(image, name, background, exif_transpose)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image {name} is too large to decode safely: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(f"cannot identify image {name}: not an image file or an unsupported format") from exc
    except MemoryError as exc:
        raise ImageLoadError(f"out of memory while decoding image {name}") from exc
    except Exception as exc:
        # Untrusted bytes reach several C decoders; whatever they raise (OSError for truncated
        # data, SyntaxError/ValueError/EOFError/struct.error for malformed headers, ...), the
        # caller gets one documented exception type that names the file.
        raise ImageLoadError(f"cannot decode image {name}: {type(exc).__name__}: {exc}") from exc


def _finish(image: Image.Image, name: str, background, exif_transpose: bool) -> Image.Image:
    if exif_transpose:
        try:
            transposed = ImageOps.exif_transpose(image)
        except Exception:
            transposed = None  # a broken EXIF block must not make a readable image unusable
        if transposed is not None:
            image = transposed
    try:
        rgb = _to_rgb(image, background)
    except ImageLoadError:
        raise
    except Exception as exc:
        raise ImageLoadError(
            f"cannot convert {name} from mode {image.mode!r} to RGB: {type(exc).__name__}: {exc}"
        ) from exc
    if rgb is image:
        rgb = image.copy()  # never hand back the caller's object or one tied to an open file
    rgb.info.pop("transparency", None)
    return rgb


def _to_rgb(image: Image.Image, background) -> Image.Image:
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16") or mode == "I":
        return _wide_int_to_rgb(image)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        return _gray_u8_to_rgb(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if mode == "La":  # premultiplied L + alpha; Pillow cannot convert it directly
        arr = np.asarray(image, dtype=np.float64)
        alpha = arr[..., 1]
        lum = np.where(alpha > 0, arr[..., 0] * 255.0 / np.maximum(alpha, 1.0), 0.0)
        image = Image.fromarray(np.stack([np.clip(np.rint(lum), 0, 255), alpha], -1).astype(np.uint8))  # LA
        mode = "LA"

    # P, L and RGB can carry a transparent palette index / colour key (PNG tRNS, GIF).
    has_alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info)

    if not has_alpha:
        return image.convert("RGB")
    if background is None:
        # convert("RGB") drops alpha; for P/L-with-transparency it also drops the transparent key.
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _wide_int_to_rgb(image: Image.Image) -> Image.Image:
    arr = np.asarray(image).astype(np.int64)
    if image.mode == "I" and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255)):
        return _gray_u8_to_rgb(arr.astype(np.uint8))
    arr = np.clip(arr, 0, 65535)
    # round(v / 257) in integers: 65535 -> 255, 257*k -> k exactly
    u8 = ((arr * 2 + 257) // 514).astype(np.uint8)
    return _gray_u8_to_rgb(u8)


def _gray_u8_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1)))  # RGB


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4):
        hint = " (looks like CHW; transpose to HWC with arr.transpose(1, 2, 0))" if arr.shape[0] in (1, 3, 4) else ""
        raise ValueError(f"expected an HWC array with 1, 3 or 4 channels, got shape {arr.shape}{hint}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an HW or HWC image array, got {arr.ndim} dimensions (shape {arr.shape})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image array has an empty spatial dimension: shape {arr.shape}")

    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.bool_:
        u8 = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        u8 = ((arr.astype(np.int64) * 2 + 257) // 514).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("float image array contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float image arrays must hold values in [0, 1], got range [{lo:g}, {hi:g}] "
                "(convert 0..255 data to uint8 first)"
            )
        u8 = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise TypeError(f"unsupported image array dtype {arr.dtype}; use uint8, uint16, bool or float in [0, 1]")

    if u8.ndim == 3 and u8.shape[-1] == 1:
        u8 = u8[..., 0]
    u8 = np.ascontiguousarray(u8)
    return Image.fromarray(u8)  # uint8 HW -> L, HWx3 -> RGB, HWx4 -> RGBA
