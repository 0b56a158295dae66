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
        # NEON widths (4 lanes, 8-column GEMM chunks, 8-row tiles) and the other ISA
        # widths straddled: channels 4/5/9/12, rows 8/9/17, odd maps
        "conv3x3_c4_5": dict(x=f(2, 4, 9, 17), w=f(5, 4, 3, 3) * 0.2, b=f(5)),
        "conv3x3_dil2_c9_12": dict(x=f(1, 9, 11, 10), w=f(12, 9, 3, 3) * 0.2, b=f(12)),
        "conv3x3_wino_c16_20": dict(x=f(1, 16, 9, 11), w=f(20, 16, 3, 3) * 0.2, b=f(20)),
        "conv3x3_x2_res": dict(x=f(1, 5, 7, 9), x2=f(1, 12, 7, 9), w=f(17, 17, 3, 3) * 0.2, b=f(17),
                               r=f(1, 17, 7, 9)),
        "linear_relu_res": dict(x=f(17, 5), w=f(12, 5) * 0.3, b=f(12), r=f(17, 12)),
        "linear_rows": dict(x=f(97, 40), w=f(72, 40) * 0.2, b=f(72)),
        "dwconv3x3_c5": dict(x=f(2, 5, 9, 21), w=f(5, 1, 3, 3) * 0.3, b=f(5)),
        "dwconv3x3_c9_dil2": dict(x=f(1, 9, 10, 12), w=f(9, 1, 3, 3) * 0.3, b=f(9)),
        "dwconv3x3_c4_s2": dict(x=f(1, 4, 13, 18), w=f(4, 1, 3, 3) * 0.3, b=f(4)),
        "relu": dict(x=f(1001)),
        "silu_edges": dict(x=np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38,
                                       -100.0, -88.9, -88.0, -87.3, 87.4, 88.8, 89.0, -1.0, 1.0, 20.0],
                                      np.float32)),
        "layer_norm_d5": dict(x=f(3, 9, 5), w=f(5), b=f(5)),
        "layer_norm_d9": dict(x=f(2, 7, 9), w=f(9), b=f(9)),
        "group_norm1_c5": dict(x=f(2, 5, 9, 7), w=f(5), b=f(5)),
        "attention_hd4_n17": dict(qkv=f(3, 17, 3 * 8)),          # 2 heads of 4
        "attention_hd12_n9": dict(qkv=f(2, 9, 3 * 36)),          # 3 heads of 12
        "sep_attention_d5": dict(qkv=f(2, 1 + 2 * 5, 6, 10)),
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
    if name == "conv3x3_c4_5":
        return ops.conv2d(a["x"], a["w"], a["b"], stride=1, padding=1, act="silu", isa=isa)
    if name == "conv3x3_dil2_c9_12":
        return ops.conv2d(a["x"], a["w"], a["b"], padding=2, dilation=2, act="relu", isa=isa)
    if name == "conv3x3_wino_c16_20":
        return ops.conv2d(a["x"], a["w"], a["b"], padding=1, act="silu", algorithm="winograd", isa=isa)
    if name == "conv3x3_x2_res":
        return ops.conv2d(a["x"], a["w"], a["b"], padding=1, act="silu", x2=a["x2"], residual=a["r"],
                          algorithm="direct", isa=isa)
    if name == "linear_relu_res":
        return ops.linear(a["x"], a["w"], a["b"], act="relu", residual=a["r"], isa=isa)
    if name == "linear_rows":
        return ops.linear(a["x"], a["w"], a["b"], isa=isa)
    if name in ("dwconv3x3_c5", "dwconv3x3_c4_s2", "dwconv3x3_c9_dil2"):
        s, d = (2, 1) if name.endswith("s2") else (1, 2) if name.endswith("dil2") else (1, 1)
        return ops.depthwise_conv2d(a["x"], a["w"], a["b"], stride=s, padding=d, dilation=d, act="silu", isa=isa)
    if name == "relu":
        return ops.relu(a["x"], isa=isa)
    if name == "silu_edges":
        return ops.silu(a["x"], isa=isa)
    if name in ("layer_norm_d5", "layer_norm_d9"):
        return ops.layer_norm(a["x"], a["w"], a["b"], isa=isa)
    if name == "group_norm1_c5":
        return ops.group_norm1(a["x"], a["w"], a["b"], isa=isa)
    if name == "attention_hd4_n17":
        return ops.multi_head_attention(a["qkv"], 2, isa=isa)
    if name == "attention_hd12_n9":
        return ops.multi_head_attention(a["qkv"], 3, isa=isa)
    if name == "sep_attention_d5":
        return ops.separable_attention(a["qkv"], isa=isa)
    raise KeyError(name)


# ops that have fast versions (the others run the reference on every ISA)
FAST_OPS = [n for n in op_inputs() if n != "bilinear"]


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
        elif name == "conv3x3_c4_5":
            y = F.silu(F.conv2d(t["x"], t["w"], t["b"], padding=1))
        elif name == "conv3x3_dil2_c9_12":
            y = F.relu(F.conv2d(t["x"], t["w"], t["b"], padding=2, dilation=2))
        elif name == "conv3x3_wino_c16_20":
            y = F.silu(F.conv2d(t["x"], t["w"], t["b"], padding=1))
        elif name == "conv3x3_x2_res":
            y = F.silu(F.conv2d(torch.cat([t["x"], t["x2"]], 1), t["w"], t["b"], padding=1)) + t["r"]
        elif name == "linear_relu_res":
            y = F.relu(F.linear(t["x"], t["w"], t["b"])) + t["r"]
        elif name == "linear_rows":
            y = F.linear(t["x"], t["w"], t["b"])
        elif name in ("dwconv3x3_c5", "dwconv3x3_c4_s2", "dwconv3x3_c9_dil2"):
            s, d = (2, 1) if name.endswith("s2") else (1, 2) if name.endswith("dil2") else (1, 1)
            y = F.silu(F.conv2d(t["x"], t["w"], t["b"], stride=s, padding=d, dilation=d, groups=t["x"].shape[1]))
        elif name == "relu":
            y = F.relu(t["x"])
        elif name == "silu_edges":
            y = F.silu(t["x"])
        elif name in ("layer_norm_d5", "layer_norm_d9"):
            y = F.layer_norm(t["x"], (t["x"].shape[-1],), t["w"], t["b"], 1e-5)
        elif name == "group_norm1_c5":
            y = F.group_norm(t["x"], 1, t["w"], t["b"], 1e-5)
        elif name in ("attention", "attention_hd4_n17", "attention_hd12_n9"):
            S, N, C3 = t["qkv"].shape
            h = {"attention": 4, "attention_hd4_n17": 2, "attention_hd12_n9": 3}[name]
            d = C3 // 3 // h
            q, k, v = t["qkv"].reshape(S, N, 3, h, d).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(S, N, h * d)
        elif name in ("sep_attention", "sep_attention_d5"):
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
    """(max |ours - ref| over finite values, max(1, max |ref|)); the NaN and
    +-Inf positions must be the same."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != {ref.shape}"
    for what, f in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        assert np.array_equal(f(ours), f(ref)), f"{what} positions differ"
    fin = np.isfinite(ref)
    if not fin.any():
        return 0.0, 1.0
    scale = max(1.0, float(np.abs(ref[fin]).max()))
    return float(np.abs(ours[fin] - ref[fin]).max()), scale
