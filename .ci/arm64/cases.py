"""The cases of the arm64 check, shared by the host side (make_refs.py, x86,
with torch) and the emulated side (test_arm64.py, aarch64, numpy only).

Everything here is deterministic from the seeds: the emulated side rebuilds
the inputs itself and reads only the weights and the expected outputs from
the .npz files the host wrote.
"""
import numpy as np

MODELS = ["mobilevit_xxs", "mobilevitv2_050"]
SIZES = [(64, 64), (97, 131)]
TOL = 1e-4          # max |ours - ref| <= TOL * max(1, max |ref|)  (the repo's rule)


def model_input(size, batch=1):
    return np.random.default_rng(1000 + sum(size) + batch).random((batch, 3, *size), dtype=np.float32)


def op_inputs():
    """name -> dict of input arrays for the per-op checks."""
    r = np.random.default_rng(7)
    f = lambda *s: r.standard_normal(s).astype(np.float32)   # noqa: E731
    return {
        "conv3x3_s1": dict(x=f(1, 24, 13, 11), w=f(32, 24, 3, 3) * 0.2, b=f(32)),
        "conv3x3_s2": dict(x=f(2, 5, 17, 16), w=f(7, 5, 3, 3) * 0.2, b=f(7)),
        "conv1x1": dict(x=f(1, 40, 9, 7), w=f(48, 40, 1, 1) * 0.2, b=f(48)),
        "dwconv3x3": dict(x=f(1, 19, 12, 15), w=f(19, 1, 3, 3) * 0.3, b=f(19)),
        "dwconv3x3_s2": dict(x=f(1, 16, 15, 12), w=f(16, 1, 3, 3) * 0.3, b=f(16)),
        "silu": dict(x=f(3, 37, 5) * 4),
        "layer_norm": dict(x=f(4, 29, 48), w=f(48), b=f(48)),
        "group_norm1": dict(x=f(2, 24, 7, 9), w=f(24), b=f(24)),
        "attention": dict(qkv=f(4, 33, 3 * 32)),
        "sep_attention": dict(qkv=f(1, 1 + 2 * 16, 8, 10)),
        "bilinear": dict(x=f(1, 6, 7, 9)),
    }


def run_ours(mobilevit, name, a, isa=None):
    """Our kernels on case ``name`` (isa=None: the build's default)."""
    ops = mobilevit.ops
    if name == "conv3x3_s1":
        return ops.conv2d(a["x"], a["w"], a["b"], stride=1, padding=1, isa=isa)
    if name == "conv3x3_s2":
        return ops.conv2d(a["x"], a["w"], a["b"], stride=2, padding=1, isa=isa)
    if name == "conv1x1":
        return ops.conv2d(a["x"], a["w"], a["b"], isa=isa)
    if name == "dwconv3x3":
        return ops.depthwise_conv2d(a["x"], a["w"], a["b"], stride=1, padding=1, isa=isa)
    if name == "dwconv3x3_s2":
        return ops.depthwise_conv2d(a["x"], a["w"], a["b"], stride=2, padding=1, isa=isa)
    if name == "silu":
        return ops.silu(a["x"], isa=isa)
    if name == "layer_norm":
        return ops.layer_norm(a["x"], a["w"], a["b"], isa=isa)
    if name == "group_norm1":
        return ops.group_norm1(a["x"], a["w"], a["b"], isa=isa)
    if name == "attention":
        return ops.multi_head_attention(a["qkv"], 4, isa=isa)
    if name == "sep_attention":
        return ops.separable_attention(a["qkv"], isa=isa)
    if name == "bilinear":
        return ops.interpolate_bilinear(a["x"], (15, 11))
    raise KeyError(name)


def run_torch(torch, name, a):
    """PyTorch's answer for case ``name`` (host side only)."""
    F = torch.nn.functional
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    with torch.no_grad():
        if name == "conv3x3_s1":
            y = F.conv2d(t["x"], t["w"], t["b"], stride=1, padding=1)
        elif name == "conv3x3_s2":
            y = F.conv2d(t["x"], t["w"], t["b"], stride=2, padding=1)
        elif name == "conv1x1":
            y = F.conv2d(t["x"], t["w"], t["b"])
        elif name == "dwconv3x3":
            y = F.conv2d(t["x"], t["w"], t["b"], stride=1, padding=1, groups=t["x"].shape[1])
        elif name == "dwconv3x3_s2":
            y = F.conv2d(t["x"], t["w"], t["b"], stride=2, padding=1, groups=t["x"].shape[1])
        elif name == "silu":
            y = F.silu(t["x"])
        elif name == "layer_norm":
            y = F.layer_norm(t["x"], (t["x"].shape[-1],), t["w"], t["b"], 1e-5)
        elif name == "group_norm1":
            y = F.group_norm(t["x"], 1, t["w"], t["b"], 1e-5)
        elif name == "attention":
            S, N, C3 = t["qkv"].shape
            h, d = 4, C3 // 3 // 4
            q, k, v = t["qkv"].reshape(S, N, 3, h, d).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(S, N, h * d)
        elif name == "sep_attention":
            x = t["qkv"]
            B, C, H, W = x.shape
            D = (C - 1) // 2
            # timm LinearSelfAttention on the unfolded map [B, C, P=4, N]
            u = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, C, 4, -1)
            q, k, v = u.split([1, D, D], dim=1)
            s = q.softmax(dim=-1)
            c = (k * s).sum(dim=-1, keepdim=True)
            o = F.relu(v) * c
            y = o.reshape(B, D, 2, 2, H // 2, W // 2).permute(0, 1, 4, 2, 5, 3).reshape(B, D, H, W)
        elif name == "bilinear":
            y = F.interpolate(t["x"], size=(15, 11), mode="bilinear", align_corners=False)
        else:
            raise KeyError(name)
    return y.numpy()


def max_err(ours, ref):
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max()))
    return float(np.abs(ours - ref).max()), scale
