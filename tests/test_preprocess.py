"""Preprocessing presets against the real transformers / timm / torchvision implementations.

The parity tests run the reference pipelines installed in the test environment on real photographs
(scikit-image's sample data) and on awkward sizes chosen so that every branch is hit: downscale and
upscale, portrait and landscape, odd size differences where floor and round-half-even crop offsets
disagree, and crops larger than the resized image (zero padding). Tolerance is 1e-6 as agreed; the
measured difference is 0 (bit-identical) and printed with ``-s``.
"""

import json
import math

import numpy as np
import pytest
from PIL import Image

from mobilevit.preprocess import (PRESETS, Preprocess, available_presets, center_crop_offsets,
                                  resize_cv2_linear)

TOL = 1e-6


def _synthetic_photo(h, w, seed=0):
    """Smooth structure + texture + noise: stands in for a photo when scikit-image is absent."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(7 * x + 3 * c) * np.cos(5 * y - c) * 90 + 128 + 40 * np.sin(60 * x * y + c) for c in range(3)]
    img = np.stack(chans, -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _photos():
    photos = {}
    try:
        from skimage import data
        for name in ("astronaut", "chelsea", "coffee", "rocket"):
            photos[name] = getattr(data, name)()
    except Exception:  # scikit-image missing: synthetic stand-ins of the same sizes
        for i, (name, hw) in enumerate({"astronaut": (512, 512), "chelsea": (300, 451), "coffee": (400, 600),
                                        "rocket": (427, 640)}.items()):
            photos[name] = _synthetic_photo(*hw, seed=i)
    base = photos["chelsea"]
    photos["odd_landscape"] = base[:299, :437]           # (299, 437): odd crop differences
    photos["portrait"] = np.ascontiguousarray(photos["coffee"].transpose(1, 0, 2)[:517, :301])
    photos["small_upscale"] = photos["astronaut"][100:181, 50:203]   # 81 x 153: upscaled
    photos["synthetic"] = _synthetic_photo(333, 250, seed=7)
    photos["exact_square"] = photos["astronaut"][:288, :288]       # resize is a no-op for hf/cvnets
    return {k: np.ascontiguousarray(v) for k, v in photos.items()}


PHOTOS = _photos()


def _report(label, ref, got):
    assert ref.shape == got.shape, f"{label}: shape {got.shape} != reference {ref.shape}"
    assert got.dtype == np.float32
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    worst = np.unravel_index(int(diff.argmax()), diff.shape)
    print(f"{label}: max|diff| = {diff.max():.3g} at {worst} ({(diff > 0).sum()} differing values)")
    assert diff.max() <= TOL, f"{label}: worst mismatch {diff.max()} at {worst}: ref {ref[worst]} got {got[worst]}"
    return diff.max()


# ----------------------------------------------------------------------------- numerics

def test_rescale_lut_matches_every_reference_formula():
    torch = pytest.importorskip("torch")
    x = np.arange(256, dtype=np.uint8)
    ours = Preprocess(resize_shortest=None, crop=None, channel_order="RGB")._to_float_chw(
        np.repeat(x[None, :, None], 3, axis=2))[0, 0]
    hf = (x.astype(np.float64) * (1 / 255)).astype(np.float32)          # transformers rescale
    tv = torch.from_numpy(x).float().div(255).numpy()                   # torchvision ToTensor / cvnets
    f32 = x.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(ours, hf)
    np.testing.assert_array_equal(ours, tv)
    np.testing.assert_array_equal(ours, f32)


def test_crop_offset_rules():
    assert center_crop_offsets(427, 256, "floor") == 85
    assert center_crop_offsets(427, 256, "round") == 86        # 85.5 -> 86 (half to even)
    assert center_crop_offsets(425, 256, "round") == 84        # 84.5 -> 84 (half to even)
    assert center_crop_offsets(256, 256, "round") == 0
    assert center_crop_offsets(253, 256, "floor") == -2        # transformers pads ceil(3/2) in front
    assert center_crop_offsets(253, 256, "round") == -1        # torchvision pads floor(3/2) in front


# ----------------------------------------------------------------------------- transformers

@pytest.fixture(scope="module")
def hf_processor():
    transformers = pytest.importorskip("transformers")
    # as convert_mlcvnets_to_pytorch.py creates it for the 256x256 apple checkpoints
    return transformers.MobileViTImageProcessor(size={"shortest_edge": 288}, crop_size={"height": 256, "width": 256})


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_hf_preset_matches_transformers(hf_processor, name):
    img = Image.fromarray(PHOTOS[name])
    ref = hf_processor(img, return_tensors="np")["pixel_values"][0]
    got = Preprocess.from_name("hf")(img)
    _report(f"hf/{name}", ref, got)


def test_hf_preset_equals_from_hf_config(hf_processor):
    assert Preprocess.from_hf_config(hf_processor.to_dict()).replace(name="hf") == PRESETS["hf"]
    # the older feature-extractor style config on the Hub stores plain ints
    legacy = {"crop_size": 256, "do_center_crop": True, "do_flip_channel_order": True, "do_resize": True,
              "feature_extractor_type": "MobileViTFeatureExtractor", "resample": 2, "size": 288}
    assert Preprocess.from_hf_config(legacy).replace(name="hf") == PRESETS["hf"]
    transformers = pytest.importorskip("transformers")
    img = Image.fromarray(PHOTOS["rocket"])
    ref = transformers.MobileViTImageProcessor(**legacy)(img, return_tensors="np")["pixel_values"][0]
    _report("hf legacy config/rocket", ref, Preprocess.from_hf_config(legacy)(img))


@pytest.mark.parametrize("kwargs", [
    {},                                                                      # class defaults: 224 / 256 -> padding
    {"size": {"shortest_edge": 288}, "crop_size": {"height": 300, "width": 240}},   # crop taller than resize
    {"size": {"shortest_edge": 544}, "crop_size": {"height": 512, "width": 512}},   # DeepLabV3 checkpoints
    {"size": {"height": 200, "width": 310}, "resample": 3, "do_flip_channel_order": False},
    {"do_center_crop": False, "size": {"shortest_edge": 100}},
    {"do_resize": False, "crop_size": {"height": 257, "width": 255}},
])
def test_from_hf_config_matches_transformers(kwargs, tmp_path):
    transformers = pytest.importorskip("transformers")
    proc = transformers.MobileViTImageProcessor(**kwargs)
    path = tmp_path / "preprocessor_config.json"
    proc.to_json_file(str(path))
    ours = Preprocess.from_hf_config(path)
    assert ours == Preprocess.from_hf_config(json.loads(path.read_text()))
    for name in ("chelsea", "portrait", "small_upscale"):
        img = Image.fromarray(PHOTOS[name])
        ref = proc(img, return_tensors="np")["pixel_values"][0]
        _report(f"hf{kwargs}/{name}", ref, ours(img))


# ----------------------------------------------------------------------------- timm

@pytest.fixture(scope="module")
def timm_mod():
    return pytest.importorskip("timm")


@pytest.fixture(scope="module")
def timm_transform(timm_mod):
    import timm.data
    model = timm_mod.create_model("mobilevit_s", pretrained=False)
    return timm.data.create_transform(**timm.data.resolve_data_config({}, model=model)), model.pretrained_cfg


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_timm_preset_matches_timm(timm_transform, name):
    transform, _ = timm_transform
    img = Image.fromarray(PHOTOS[name])
    ref = transform(img).numpy()
    got = Preprocess.from_name("timm")(img)
    _report(f"timm/{name}", ref, got)


def test_timm_cases_hit_round_half_even():
    # at least one photo must make floor and torchvision's rounding disagree, or the test above proves little
    p = PRESETS["timm"]
    hit = False
    for arr in PHOTOS.values():
        rh, rw = p.resize_target(*arr.shape[:2])
        hit |= any(center_crop_offsets(s, 256, "round") != center_crop_offsets(s, 256, "floor") for s in (rh, rw))
    assert hit


def test_timm_preset_equals_from_timm_cfg(timm_transform):
    _, cfg = timm_transform
    assert Preprocess.from_timm_cfg(cfg).replace(name="timm") == PRESETS["timm"]
    assert Preprocess.from_timm_cfg({"pretrained_cfg": cfg}) == Preprocess.from_timm_cfg(cfg)


@pytest.mark.parametrize("cfg", [
    {"input_size": (3, 256, 256), "interpolation": "bicubic", "crop_pct": 0.888, "mean": (0, 0, 0), "std": (1, 1, 1)},
    {"input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 0.875,
     "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},                    # Normalize exercised
    {"input_size": (3, 256, 256), "interpolation": "bicubic", "crop_pct": 1.2, "mean": (0, 0, 0), "std": (1, 1, 1)},
    {"input_size": (3, 192, 160), "interpolation": "bilinear", "crop_pct": 0.9, "crop_mode": "squash",
     "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 1.0)},
])
def test_from_timm_cfg_matches_timm(timm_mod, cfg):
    import timm.data
    transform = timm.data.create_transform(**timm.data.resolve_data_config(cfg))
    ours = Preprocess.from_timm_cfg(cfg)
    for name in ("chelsea", "odd_landscape", "portrait", "small_upscale"):
        img = Image.fromarray(PHOTOS[name])
        _report(f"timm{cfg['input_size'][1:]}/{name}", transform(img).numpy(), ours(img))


def test_timm_v2_preset_matches_timm(timm_mod):
    import timm.data
    model = timm_mod.create_model("mobilevitv2_050", pretrained=False)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    img = Image.fromarray(PHOTOS["rocket"])
    _report("timm_v2/rocket", transform(img).numpy(), Preprocess.from_name("timm_v2")(img))


@pytest.mark.parametrize("size", [160, 192, 288, 320])
def test_timm_resized_follows_timm_rule(timm_mod, size):
    import timm.data
    cfg = {"input_size": (3, size, size), "interpolation": "bicubic", "crop_pct": 0.9, "mean": (0, 0, 0),
           "std": (1, 1, 1)}
    transform = timm.data.create_transform(**timm.data.resolve_data_config(cfg))
    ours = Preprocess.from_name("timm").resized(size, size)
    assert ours.resize_shortest == math.floor(size / 0.9)
    img = Image.fromarray(PHOTOS["coffee"])
    _report(f"timm.resized({size})/coffee", transform(img).numpy(), ours(img))


def test_timm_cfg_rejections():
    with pytest.raises(ValueError, match="non-square"):
        Preprocess.from_timm_cfg({"input_size": (3, 256, 192), "crop_pct": 0.9})
    with pytest.raises(ValueError, match="crop_mode"):
        Preprocess.from_timm_cfg({"input_size": (3, 256, 256), "crop_mode": "border"})
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess.from_timm_cfg({"input_size": (3, 256, 256), "interpolation": "random"})


# ----------------------------------------------------------------------------- OpenCV bilinear (cvnets)

def test_cv2_linear_hand_computed():
    # 1x2 -> 1x4: half-pixel centres at -0.25, 0.25, 0.75, 1.25 -> 0, 255/4, 3*255/4, 255 (fixed point)
    out = resize_cv2_linear(np.array([[0, 255]], np.uint8), 1, 4)
    assert out.tolist() == [[0, 64, 191, 255]]
    # 2x2 -> 3x3
    out = resize_cv2_linear(np.array([[0, 100], [200, 250]], np.uint8), 3, 3)
    assert out[0, 0] == 0 and out[2, 2] == 250 and out[0, 2] == 100 and out[2, 0] == 200
    assert out[1, 1] == round((0 + 100 + 200 + 250) / 4)


def test_cv2_linear_identity_and_2x_area():
    img = PHOTOS["synthetic"]
    np.testing.assert_array_equal(resize_cv2_linear(img, *img.shape[:2]), img)
    # exact 2x: OpenCV switches to INTER_AREA; the fixed-point bilinear path must give the same values
    small = resize_cv2_linear(img[:332], 166, 125)
    blocks = img[:332].astype(int).reshape(166, 2, 125, 2, 3).sum((1, 3))
    np.testing.assert_array_equal(small, (blocks + 2) >> 2)
    np.testing.assert_array_equal(resize_cv2_linear(img[:332], 166, 125, simd_bytes=0), (blocks + 2) >> 2)


@pytest.mark.parametrize("out_hw", [(288, 432), (97, 131), (600, 901), (288, 288), (5, 3)])
def test_cv2_linear_against_independent_float_bilinear(out_hw):
    torch = pytest.importorskip("torch")
    img = PHOTOS["chelsea"]
    ours = resize_cv2_linear(img, *out_hw).astype(int)
    # PyTorch bilinear, align_corners=False, no antialias: the same sampling grid in float arithmetic
    t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    ref = torch.nn.functional.interpolate(t, size=out_hw, mode="bilinear", align_corners=False, antialias=False)
    ref = ref[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours - ref)
    print(f"cv2_linear{out_hw}: max|ours - float bilinear| = {diff.max():.3f}, mean {diff.mean():.4f}")
    assert diff.max() <= 1.0            # fixed-point rounding only
    assert diff.mean() < 0.35
    scalar = resize_cv2_linear(img, *out_hw, simd_bytes=0).astype(int)
    assert np.abs(scalar - ours).max() <= 1
    assert np.abs(scalar - ref).max() <= 1.0


def test_cvnets_preset_pipeline():
    img = PHOTOS["chelsea"]                       # 300 x 451 -> 288 x 432, crop 256 at (16, 88)
    got = Preprocess.from_name("cvnets")(img)
    resized = resize_cv2_linear(img, 288, int(288 * 451 / 300))
    want = resized[16:272, 88:344, ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (3, 256, 256) and got.flags["C_CONTIGUOUS"]


# ----------------------------------------------------------------------------- API

def test_presets_and_overrides():
    assert set(available_presets()) == {"hf", "timm", "cvnets", "timm_v2", "cvnets_v2", "hf_seg", "cvnets_seg",
                                      "cvnets_v2_seg", "cvnets_v2_seg_bilinear"}
    p = Preprocess.from_name("HF", crop=224)
    assert p.crop == (224, 224) and p.resize_shortest == 288 and p.channel_order == "BGR"
    assert Preprocess.from_name("timm", channel_order="bgr").channel_order == "BGR"
    with pytest.raises(ValueError, match="available"):
        Preprocess.from_name("caffe")
    for bad in ({"interpolation": "cubicspline"}, {"channel_order": "RGBA"}, {"std": (1, 0, 1)},
                {"crop": (0, 10)}, {"crop_rounding": "ceil"}, {"resize_shortest": -3}, {"mean": (1, 2)},
                {"resize_shortest": 100, "resize_size": (10, 10)}):
        with pytest.raises(ValueError):
            Preprocess(**bad)
    assert "hf" in repr(PRESETS["hf"]) and "BGR" in repr(PRESETS["hf"])


def test_channel_order_and_normalisation():
    img = PHOTOS["rocket"]
    rgb = Preprocess.from_name("hf", channel_order="RGB")(img)
    bgr = Preprocess.from_name("hf")(img)
    np.testing.assert_array_equal(rgb[::-1], bgr)
    norm = Preprocess.from_name("hf", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))(img)
    want = (bgr - np.float32([0.1, 0.2, 0.3])[:, None, None]) / np.float32([0.5, 0.25, 2.0])[:, None, None]
    np.testing.assert_array_equal(norm, want)
    raw = Preprocess.from_name("hf", rescale=None)(img)
    np.testing.assert_allclose(raw / 255.0, bgr, rtol=0, atol=1e-7)


def test_resized_rules():
    hf = PRESETS["hf"].resized(320, 320)
    assert (hf.resize_shortest, hf.crop) == (352, (320, 320))       # crop + 32, as ml-cvnets / HF conversion
    wide = PRESETS["cvnets"].resized(160, 224)
    assert (wide.resize_shortest, wide.crop) == (256, (160, 224))
    out = wide(PHOTOS["coffee"])
    assert out.shape == (3, 160, 224)
    assert PRESETS["hf"].resized(200, 200, resize_shortest=210).resize_shortest == 210
    no_crop = PRESETS["hf"].replace(crop=None).resized(100, 120)
    assert no_crop.resize_size == (100, 120) and no_crop(PHOTOS["coffee"]).shape == (3, 100, 120)


def test_inputs_agree_and_batch(tmp_path):
    arr = PHOTOS["coffee"]
    path = tmp_path / "coffee.png"
    Image.fromarray(arr).save(path)
    p = PRESETS["hf"]
    ref = p(arr)
    for src in (Image.fromarray(arr), str(path), path, path.read_bytes()):
        np.testing.assert_array_equal(p(src), ref)
    batch = p.batch([arr, PHOTOS["chelsea"], str(path)])
    assert batch.shape == (3, 3, 256, 256) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], ref)
    np.testing.assert_array_equal(batch[2], ref)
    with pytest.raises(ValueError, match="different shapes"):
        p.replace(crop=None).batch([arr, PHOTOS["portrait"]])
    with pytest.raises(ValueError):
        p.batch([])
