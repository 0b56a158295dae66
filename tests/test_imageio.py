"""load_image: every format / mode we promise, EXIF orientation, alpha rules, and clean failures."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mobilevit.imageio import ImageLoadError, ImageTooLargeError, load_image


def _pattern(h=48, w=64):
    """A deterministic RGB test card: quadrant colours plus a gradient (lossless formats compare exactly)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // (w - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // (h - 1)).astype(np.uint8)
    img[..., 2] = 40
    img[: h // 2, : w // 2] = (250, 10, 10)   # red top-left block marks the orientation
    return img


def _assert_rgb(im, size):
    assert isinstance(im, Image.Image)
    assert im.mode == "RGB"
    assert im.size == size


# ----------------------------------------------------------------------------- formats

@pytest.mark.parametrize("fmt,ext,lossless", [
    ("PNG", "png", True), ("BMP", "bmp", True), ("TIFF", "tiff", True), ("WEBP", "webp", False),
    ("JPEG", "jpg", False),
])
def test_formats_roundtrip(tmp_path, fmt, ext, lossless):
    arr = _pattern()
    path = tmp_path / f"img.{ext}"
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(arr).save(path, fmt, **kwargs)
    im = load_image(path)
    _assert_rgb(im, (64, 48))
    got = np.asarray(im).astype(int)
    if lossless or fmt == "WEBP":
        np.testing.assert_array_equal(got, arr)
    else:
        assert np.abs(got - arr).mean() < 4.0
    # str path, bytes, bytearray, memoryview and file objects decode identically
    data = path.read_bytes()
    for src in (str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(np.asarray(load_image(src)), got)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_first_frame_of_animation(tmp_path, fmt):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (20, 10), c) for c in colours]
    path = tmp_path / f"anim.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **extra)
    with Image.open(path) as probe:
        assert probe.n_frames == 3
    im = load_image(path)
    _assert_rgb(im, (20, 10))
    assert np.asarray(im).reshape(-1, 3).tolist() == [[255, 0, 0]] * 200
    # also when the caller hands over a file object positioned anywhere
    fh = open(path, "rb")
    fh.seek(0)
    with fh:
        np.testing.assert_array_equal(np.asarray(load_image(fh)), np.asarray(im))


def test_gif_transparency_composited(tmp_path):
    pal = Image.new("P", (4, 2), 0)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.putpixel((0, 0), 1)
    path = tmp_path / "t.gif"
    pal.save(path, transparency=0)
    out = np.asarray(load_image(path))
    assert out[0, 0].tolist() == [200, 30, 30]
    assert out[1, 3].tolist() == [255, 255, 255]  # transparent index -> white background


# ----------------------------------------------------------------------------- EXIF

@pytest.mark.parametrize("orientation,expected", [
    (1, lambda a: a),
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),   # stored image must be rotated 90 degrees clockwise
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_applied(tmp_path, orientation, expected):
    arr = _pattern()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, "JPEG", quality=95, exif=exif)
    im = load_image(path)
    want = expected(arr)
    assert im.size == (want.shape[1], want.shape[0])
    assert np.abs(np.asarray(im).astype(int) - want).mean() < 4.0
    # the red marker block ends up where the orientation puts it
    red = (np.asarray(im)[..., 0] > 200) & (np.asarray(im)[..., 1] < 60)
    want_red = (want[..., 0] > 200) & (want[..., 1] < 60)
    assert (red == want_red).mean() > 0.97
    # opt-out keeps the stored pixel layout
    raw = load_image(path, exif_transpose=False)
    assert raw.size == (64, 48)


def test_exif_applied_to_pil_input_once(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(_pattern()).save(path, "JPEG", exif=exif)
    with Image.open(path) as pil:
        first = load_image(pil)
    assert first.size == (48, 64)
    again = load_image(first)          # orientation tag was consumed: no second rotation
    assert again.size == (48, 64)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))


# ----------------------------------------------------------------------------- modes

def test_palette_png_with_transparency(tmp_path):
    pal = Image.new("P", (6, 4), 0)
    pal.putpalette([10, 20, 30, 0, 128, 255] + [0] * 762)
    for x in range(3):
        pal.putpixel((x, 0), 1)
    path = tmp_path / "pal.png"
    pal.save(path, transparency=0)
    with Image.open(path) as probe:
        assert probe.mode == "P" and "transparency" in probe.info
    out = np.asarray(load_image(path))
    assert out[0, 0].tolist() == [0, 128, 255]
    assert out[3, 5].tolist() == [255, 255, 255]                 # default: composite on white
    dropped = np.asarray(load_image(path, background=None))
    assert dropped[3, 5].tolist() == [10, 20, 30]                 # same as convert("RGB")
    with Image.open(path) as ref:
        np.testing.assert_array_equal(dropped, np.asarray(ref.convert("RGB")))
    grey = np.asarray(load_image(path, background=(7, 8, 9)))
    assert grey[3, 5].tolist() == [7, 8, 9]


def test_rgba_alpha_composite_and_drop(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = np.array([0, 85, 170, 255], np.uint8)[None, :]
    path = tmp_path / "rgba.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path)).astype(float)
    alpha = arr[0, :, 3] / 255.0
    want_r = 200 * alpha + 255 * (1 - alpha)
    want_gb = 255 * (1 - alpha)
    assert np.abs(out[0, :, 0] - want_r).max() <= 1.0
    assert np.abs(out[0, :, 1] - want_gb).max() <= 1.0
    dropped = np.asarray(load_image(path, background=None))
    assert dropped[..., 0].min() == 200 and dropped[..., 1:].max() == 0


@pytest.mark.parametrize("mode", ["L", "LA", "1", "I;16", "CMYK", "YCbCr", "RGBX", "RGBa", "La", "PA", "F", "I"])
def test_every_mode_becomes_rgb(mode):
    base = Image.fromarray(_pattern(16, 24))
    if mode in ("I;16", "I", "F", "La", "PA"):
        gray = np.asarray(base.convert("L"))
        if mode == "I;16":
            im = Image.fromarray(gray.astype(np.uint16) * 257)
        elif mode == "I":
            im = Image.fromarray(gray.astype(np.int32) * 257)
        elif mode == "F":
            im = Image.fromarray(gray.astype(np.float32) / 255.0)
        elif mode == "La":
            im = Image.frombytes("La", base.size, np.stack([gray, np.full_like(gray, 255)], -1).tobytes())
        else:
            im = base.convert("P").convert("PA")
        want_gray = gray
    else:
        im = base.convert(mode)
        want_gray = None
    out = load_image(im)
    _assert_rgb(out, (24, 16))
    assert out is not im
    if want_gray is not None and mode != "PA":
        np.testing.assert_array_equal(np.asarray(out)[..., 0], want_gray)
        np.testing.assert_array_equal(np.asarray(out)[..., 2], want_gray)


def test_sixteen_bit_png_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 8).astype(np.uint16).reshape(8, 64)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as probe:
        assert probe.mode.startswith("I")
    out = np.asarray(load_image(path))
    want = np.round(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 1], want)
    assert out.max() == 255 and out.min() == 0 and len(np.unique(out)) > 200  # not clipped to white


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))   # pure red in naive CMYK
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, "JPEG", quality=95)
    with Image.open(path) as probe:
        assert probe.mode == "CMYK"
    out = np.asarray(load_image(path)).astype(int)
    assert np.abs(out - np.array([255, 0, 0])).max() <= 6


def test_float_tiff(tmp_path):
    f = (np.arange(12 * 10, dtype=np.float32).reshape(12, 10) / 119.0)
    path = tmp_path / "f.tif"
    Image.fromarray(f).save(path)
    out = np.asarray(load_image(path))
    np.testing.assert_array_equal(out[..., 0], np.clip(np.rint(f.astype(np.float64) * 255), 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------- numpy input

def test_numpy_inputs():
    arr = _pattern(10, 12)
    np.testing.assert_array_equal(np.asarray(load_image(arr)), arr)
    gray = arr[..., 0]
    np.testing.assert_array_equal(np.asarray(load_image(gray))[..., 2], gray)
    np.testing.assert_array_equal(np.asarray(load_image(gray[..., None]))[..., 1], gray)
    np.testing.assert_array_equal(np.asarray(load_image(arr.astype(np.float64) / 255.0)), arr)
    np.testing.assert_array_equal(np.asarray(load_image(arr.astype(np.uint16) * 257)), arr)
    assert np.asarray(load_image(np.ones((3, 4), bool))).min() == 255
    rgba = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), arr)


@pytest.mark.parametrize("bad,exc,msg", [
    (np.zeros((3, 10, 12), np.uint8), ValueError, "CHW"),
    (np.zeros((10, 12, 5), np.uint8), ValueError, "channels"),
    (np.zeros((2, 3, 4, 3), np.uint8), ValueError, "dimensions"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    (np.full((4, 4, 3), 2.0), ValueError, r"\[0, 1\]"),
    (np.full((4, 4, 3), np.nan), ValueError, "NaN"),
    (np.zeros((4, 4, 3), np.int64), TypeError, "dtype"),
])
def test_numpy_rejections(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        load_image(bad)


def test_wrong_argument_types():
    with pytest.raises(TypeError):
        load_image(42)
    with pytest.raises(TypeError):
        load_image(_pattern(), background="white")
    with pytest.raises(ValueError):
        load_image(_pattern(), background=(0, 0, 300))


def test_pil_input_is_copied():
    src = Image.fromarray(_pattern(8, 8))
    out = load_image(src)
    assert out is not src
    out.putpixel((0, 0), (1, 2, 3))
    assert src.getpixel((0, 0)) != (1, 2, 3)


# ----------------------------------------------------------------------------- failures

def _jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray(_pattern(128, 128)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_bytes():
    buf = io.BytesIO()
    Image.fromarray(_pattern(128, 128)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("payload", [
    _jpeg_bytes()[: len(_jpeg_bytes()) // 2],             # truncated JPEG
    _png_bytes()[: len(_png_bytes()) // 2],               # truncated PNG
    _png_bytes()[:8] + b"\x00" * 64,                      # PNG signature, garbage chunks
    b"GIF89a" + b"\xff" * 20,                             # broken GIF header
    b"hello, this is not an image\n" * 10,                # text
    b"\x00",
])
def test_corrupt_inputs_raise_image_load_error(tmp_path, payload):
    path = tmp_path / "broken.img"
    path.write_bytes(payload)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert isinstance(info.value, ValueError)
    assert "broken.img" in str(info.value)
    with pytest.raises(ImageLoadError):
        load_image(payload)


def test_empty_missing_and_directory(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError):
        load_image(empty)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def _png_header_only(width, height):
    """A PNG that declares width x height but carries a tiny (invalid) payload: a decompression-bomb probe."""
    def chunk(tag, data):
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    huge = _png_header_only(100_000, 100_000)            # 1e10 px: Pillow itself refuses (> 2x limit)
    with pytest.raises(ImageTooLargeError):
        load_image(huge)
    # between 1x and 2x Pillow's limit Pillow only warns; we refuse before decoding
    w = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    with pytest.warns(Image.DecompressionBombWarning):
        with pytest.raises(ImageTooLargeError, match="pixels"):
            load_image(_png_header_only(w, w))
    # explicit and global limits
    path = tmp_path / "small.png"
    Image.fromarray(_pattern(20, 20)).save(path)
    with pytest.raises(ImageTooLargeError):
        load_image(path, max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)      # the default limit is read at call time
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLargeError):
        load_image(path)
    with pytest.raises(ImageTooLargeError):
        load_image(Image.fromarray(_pattern(20, 20)))
    with pytest.warns(Image.DecompressionBombWarning):
        assert load_image(path, max_pixels=None).size == (20, 20)   # our check off; Pillow's 2x one passes
    assert issubclass(ImageTooLargeError, ImageLoadError)
