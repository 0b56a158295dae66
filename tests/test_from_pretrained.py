"""from_pretrained on files written by the real libraries (issue 3, item 5):
torch.save (zip and legacy), HF save_pretrained (safetensors and bin),
timm's checkpoint saver and save_for_hf, an ml-cvnets-named state dict; after
loading, logits equal the PyTorch model that wrote the file within 1e-4."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mobilevit  # noqa: E402
from reference_models import assert_close, hf_model, timm_model  # noqa: E402
from test_api import _timm_to_cvnets  # noqa: E402

X = np.random.default_rng(0).random((2, 3, 96, 112), dtype=np.float32)


def torch_logits(model):
    with torch.no_grad():
        y = model(torch.from_numpy(X))
    return (y.logits if hasattr(y, "logits") else y).numpy()


@pytest.fixture(scope="module")
def timm_xs():
    return timm_model("mobilevit_xs", seed=21)


@pytest.fixture(scope="module")
def hf_xxs():
    m = hf_model("mobilevit_xxs", seed=22, num_labels=5)
    m.config.id2label = {i: f"class_{i}" for i in range(5)}
    m.config.label2id = {v: k for k, v in m.config.id2label.items()}
    return m


@pytest.mark.parametrize("zipfmt", [True, False])
def test_torch_save_both_formats(tmp_path, timm_xs, zipfmt):
    path = tmp_path / "w.pth"
    torch.save(timm_xs.state_dict(), path, _use_new_zipfile_serialization=zipfmt)
    m = mobilevit.from_pretrained(path)
    assert m.cfg.name == "mobilevit_xs" and m.num_classes == 1000
    assert_close(m(X), torch_logits(timm_xs), 1e-4, "torch.save")


@pytest.mark.parametrize("safe", [True, False])
def test_hf_save_pretrained(tmp_path, hf_xxs, safe):
    hf_xxs.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 256, "width": 256}, "do_flip_channel_order": True,
         "size": {"shortest_edge": 288}, "resample": 2, "image_processor_type": "MobileViTImageProcessor"}))
    m = mobilevit.from_pretrained(tmp_path)
    assert m.cfg.name == "mobilevit_xxs" and m.num_classes == 5
    assert m.class_names == [f"class_{i}" for i in range(5)]
    assert m.pretrained_cfg["scheme"] == "hf" and m.pretrained_cfg["preprocessor_config"]["crop_size"]["height"] == 256
    assert_close(m(X), torch_logits(hf_xxs), 1e-4, "hf folder")


def test_timm_checkpoint_saver_and_save_for_hf(tmp_path, timm_xs):
    pytest.importorskip("timm")
    from timm.utils import CheckpointSaver
    opt = torch.optim.AdamW(timm_xs.parameters(), lr=1e-3)
    saver = CheckpointSaver(timm_xs, opt, args=None, model_ema=timm_xs, checkpoint_dir=str(tmp_path),
                            recovery_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(epoch=3, metric=0.5)
    ckpts = [f for f in os.listdir(tmp_path) if f.endswith(".pth.tar")]
    assert ckpts
    m = mobilevit.from_pretrained(tmp_path / ckpts[0])
    assert_close(m(X), torch_logits(timm_xs), 1e-4, "timm CheckpointSaver")
    m_ema = mobilevit.from_pretrained(tmp_path / ckpts[0], prefer_ema=True)
    assert_close(m_ema(X), torch_logits(timm_xs), 1e-4, "timm EMA")

    from timm.models import save_for_hf
    hub_dir = tmp_path / "hub"
    save_for_hf(timm_xs, str(hub_dir))
    m2 = mobilevit.from_pretrained(hub_dir)
    assert m2.cfg.name == "mobilevit_xs"
    assert_close(m2(X), torch_logits(timm_xs), 1e-4, "timm save_for_hf")


def test_cvnets_named_checkpoint(tmp_path, timm_xs):
    sd = {_timm_to_cvnets(k, {2: 2, 3: 4, 4: 3}): v for k, v in timm_xs.state_dict().items()}
    assert any(k.startswith("layer_3.1.global_rep.0.pre_norm_mha.1.qkv_proj") for k in sd)
    path = tmp_path / "mobilevit_xs.pt"
    torch.save({"state_dict": sd, "epoch": 300}, path)
    m = mobilevit.from_pretrained(path)
    assert m.pretrained_cfg["scheme"] == "cvnets"
    assert_close(m(X), torch_logits(timm_xs), 1e-4, "cvnets names")


def test_mapping_of_tensors_and_save_roundtrip(tmp_path, hf_xxs):
    m = mobilevit.from_pretrained(dict(hf_xxs.state_dict()))
    assert m.num_classes == 5
    m.class_names = ["a", "b", "c", "d", "e"]
    out = m.save(tmp_path / "saved")
    again = mobilevit.from_pretrained(out)
    np.testing.assert_array_equal(again(X), m(X))
    assert again.class_names == ["a", "b", "c", "d", "e"]
    single = m.save(tmp_path / "one.safetensors")
    np.testing.assert_array_equal(mobilevit.from_pretrained(single)(X), m(X))
    # the safetensors package reads our file
    st = pytest.importorskip("safetensors.numpy")
    loaded = st.load_file(str(single))
    np.testing.assert_array_equal(loaded["stem.conv.weight"], m.params["stem.conv.weight"])


def test_wrong_variant_and_bad_sources(tmp_path, timm_xs):
    path = tmp_path / "xs.pth"
    torch.save(timm_xs.state_dict(), path)
    with pytest.raises(mobilevit.StateDictError, match="expected"):
        mobilevit.from_pretrained(path, model_name="mobilevit_s")
    with pytest.raises(FileNotFoundError):
        mobilevit.from_pretrained(tmp_path / "missing.pt")
    with pytest.raises(TypeError):
        mobilevit.from_pretrained(42)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(mobilevit.CheckpointError):
        mobilevit.from_pretrained(junk)
    with pytest.raises(mobilevit.CheckpointError, match="variant"):
        mobilevit.from_pretrained({"stem.conv.weight": np.zeros((16, 3, 3, 3), np.float32)})


def test_malicious_checkpoint_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(mobilevit.CheckpointError):
        mobilevit.from_pretrained(path)
    assert not sentinel.exists()
