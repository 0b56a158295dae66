"""Reference PyTorch models (timm, HF transformers) with random weights,
BatchNorm statistics and affine parameters randomised so that folding and
every parameter are exercised.  Used by the parity tests only."""
from __future__ import annotations

import numpy as np

HF_CONFIGS = {
    "mobilevit_xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                          expand_ratio=2.0),
    "mobilevit_xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384],
                         expand_ratio=4.0),
    "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640],
                        expand_ratio=4.0),
}


def randomize_(model, seed: int):
    """Give BatchNorm/LayerNorm non-trivial statistics and affine params."""
    import torch
    g = torch.Generator().manual_seed(seed)

    def u(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                u(m.running_mean, -0.3, 0.3)
                u(m.running_var, 0.5, 2.0)
                u(m.weight, 0.5, 1.5)
                u(m.bias, -0.3, 0.3)
            elif isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                u(m.weight, 0.5, 1.5)
                u(m.bias, -0.3, 0.3)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                u(m.bias, -0.2, 0.2)
    return model.eval()


def timm_model(name: str, seed: int = 0, num_classes: int = 1000):
    import timm
    import torch
    torch.manual_seed(seed)
    return randomize_(timm.create_model(name, pretrained=False, num_classes=num_classes), seed + 1)


def hf_model(name: str, seed: int = 0, num_labels: int = 1000):
    import torch
    from transformers import MobileViTConfig, MobileViTForImageClassification
    torch.manual_seed(seed)
    cfg = MobileViTConfig(num_labels=num_labels, **HF_CONFIGS[name])
    return randomize_(MobileViTForImageClassification(cfg), seed + 1)


def state_dict_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def assert_close(ours, ref, tol=1e-4, what="output"):
    """max |ours - ref| <= tol * max(1, max |ref|): the issue's tolerance,
    scaled by the tensor's magnitude where that exceeds 1."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    err = float(np.abs(ours - ref).max()) if ref.size else 0.0
    idx = np.unravel_index(int(np.abs(ours - ref).argmax()), ref.shape) if ref.size else ()
    assert err <= tol * scale, (f"{what}: max abs diff {err:.3e} > {tol:g} x {scale:.3g} at {idx} "
                                f"(ours {ours[idx] if ref.size else None}, ref {ref[idx] if ref.size else None})")
    return err / scale


def timm_v2_model(name: str, seed: int = 0, num_classes: int = 1000):
    return timm_model(name, seed, num_classes)


def hf_v2_model(alpha: float, seed: int = 0, num_labels: int = 1000):
    import torch
    from transformers import MobileViTV2Config, MobileViTV2ForImageClassification
    torch.manual_seed(seed)
    cfg = MobileViTV2Config(num_labels=num_labels, width_multiplier=alpha)
    return randomize_(MobileViTV2ForImageClassification(cfg), seed + 1)


def hf_seg_model(name: str, seed: int = 0, num_labels: int = 21, output_stride: int = 16):
    import torch
    from transformers import MobileViTConfig, MobileViTForSemanticSegmentation
    torch.manual_seed(seed)
    cfg = MobileViTConfig(num_labels=num_labels, output_stride=output_stride, **HF_CONFIGS[name])
    return randomize_(MobileViTForSemanticSegmentation(cfg), seed + 1)


def hf_v2_seg_model(alpha: float, seed: int = 0, num_labels: int = 21, output_stride: int = 16):
    import torch
    from transformers import MobileViTV2Config, MobileViTV2ForSemanticSegmentation
    torch.manual_seed(seed)
    cfg = MobileViTV2Config(num_labels=num_labels, width_multiplier=alpha, output_stride=output_stride)
    return randomize_(MobileViTV2ForSemanticSegmentation(cfg), seed + 1)
