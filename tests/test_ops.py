"""Each C kernel against PyTorch, on every ISA path, over sizes that straddle
the SIMD widths (8 and 16 lanes, 32-column panels, 6/12-row tiles), odd
spatial sizes, batch 1 and > 1; 1 and 2 threads must agree bit for bit.

Tolerances (fp32, max abs diff scaled by max(1, |ref|)): 1e-5 for
reductions shorter than ~600 terms, 2e-5 for the longer conv reductions.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from mobilevit import ops  # noqa: E402
from reference_models import assert_close  # noqa: E402

CH = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33]


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def both_thread_counts(fn):
    """Run fn(num_threads) with 1 and 2 threads; results must be identical."""
    y1 = fn(1)
    y2 = fn(2)
    np.testing.assert_array_equal(y1, y2)
    return y1


@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 16), (7, 9), (8, 17), (15, 31), (16, 32), (33, 33), (64, 48)])
@pytest.mark.parametrize("batch", [1, 3])
def test_linear_gemm(isa, rng, cin, cout, batch):
    x = rng.standard_normal((batch, 13, cin)).astype(np.float32)
    w = rng.standard_normal((cout, cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    r = rng.standard_normal((batch, 13, cout)).astype(np.float32)
    for act, ref_act in [(None, lambda v: v), ("silu", F.silu), ("relu", F.relu)]:
        y = both_thread_counts(lambda n: ops.linear(x, w, b, act=act, residual=r, isa=isa, num_threads=n))
        ref = ref_act(F.linear(t(x), t(w), t(b))) + t(r)
        assert_close(y, ref.numpy(), 1e-5, f"linear {act}")


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 95, 96, 97, 200, 256, 257, 300])
def test_gemm_rows_straddle_tiles(isa, rng, m):
    x = rng.standard_normal((m, 40)).astype(np.float32)
    w = rng.standard_normal((72, 40)).astype(np.float32)
    y = both_thread_counts(lambda n: ops.linear(x, w, None, isa=isa, num_threads=n))
    assert_close(y, (t(x) @ t(w).T).numpy(), 1e-5, "gemm rows")


@pytest.mark.parametrize("cin,cout", [(3, 16), (7, 9), (16, 17), (17, 33), (32, 31)])
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (8, 8), (13, 17), (16, 33)])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv3x3(isa, rng, cin, cout, hw, stride):
    x = rng.standard_normal((2, cin, *hw)).astype(np.float32)
    w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(cout).astype(np.float32)
    y = both_thread_counts(lambda n: ops.conv2d(x, w, b, stride=stride, padding=1, act="silu", isa=isa,
                                                num_threads=n))
    ref = F.silu(F.conv2d(t(x), t(w), t(b), stride=stride, padding=1))
    assert_close(y, ref.numpy(), 2e-5, "conv3x3")


@pytest.mark.parametrize("dilation", [1, 2, 6])
def test_conv3x3_dilated_and_1x1_strided(isa, rng, dilation):
    x = rng.standard_normal((1, 12, 19, 14)).astype(np.float32)
    w = rng.standard_normal((20, 12, 3, 3)).astype(np.float32) * 0.3
    y = ops.conv2d(x, w, None, stride=1, padding=dilation, dilation=dilation, isa=isa)
    assert_close(y, F.conv2d(t(x), t(w), padding=dilation, dilation=dilation).numpy(), 2e-5, "dilated")
    w1 = rng.standard_normal((9, 12, 1, 1)).astype(np.float32)
    y = ops.conv2d(x, w1, None, stride=2, padding=0, isa=isa)
    assert_close(y, F.conv2d(t(x), t(w1), stride=2).numpy(), 1e-5, "1x1 stride 2")


@pytest.mark.parametrize("c1,c2", [(3, 5), (16, 16), (17, 15)])
def test_conv_concat_input_and_residual(isa, rng, c1, c2):
    """The fusion conv reads cat([x, x2]) without building it."""
    x = rng.standard_normal((2, c1, 9, 10)).astype(np.float32)
    x2 = rng.standard_normal((2, c2, 9, 10)).astype(np.float32)
    w = rng.standard_normal((c1, c1 + c2, 3, 3)).astype(np.float32) * 0.2
    b = rng.standard_normal(c1).astype(np.float32)
    r = rng.standard_normal((2, c1, 9, 10)).astype(np.float32)
    y = both_thread_counts(lambda n: ops.conv2d(x, w, b, padding=1, x2=x2, residual=r, isa=isa, num_threads=n))
    ref = F.conv2d(torch.cat([t(x), t(x2)], 1), t(w), t(b), padding=1) + t(r)
    assert_close(y, ref.numpy(), 2e-5, "concat conv")


@pytest.mark.parametrize("c", CH + [48, 64, 100])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(11, 8), (1, 1), (2, 3), (5, 17), (3, 41), (2, 64)])
def test_depthwise3x3(isa, rng, c, stride, hw):
    x = rng.standard_normal((2, c, *hw)).astype(np.float32)
    w = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    y = both_thread_counts(lambda n: ops.conv2d(x, w, b, stride=stride, padding=1, groups=c, act="silu",
                                                isa=isa, num_threads=n))
    ref = F.silu(F.conv2d(t(x), t(w), t(b), stride=stride, padding=1, groups=c))
    assert_close(y, ref.numpy(), 1e-5, "dwconv")


@pytest.mark.parametrize("dil,stride,hw", [(2, 1, (12, 12)), (2, 2, (9, 13)), (4, 1, (3, 11)), (1, 2, (4, 4)), (2, 1, (3, 37))])
def test_depthwise_dilated(isa, rng, dil, stride, hw):
    x = rng.standard_normal((1, 24, *hw)).astype(np.float32)
    w = rng.standard_normal((24, 1, 3, 3)).astype(np.float32)
    y = ops.depthwise_conv2d(x, w, None, stride=stride, padding=dil, dilation=dil, isa=isa)
    ref = F.conv2d(t(x), t(w), stride=stride, padding=dil, dilation=dil, groups=24)
    assert_close(y, ref.numpy(), 1e-5, "dw dilated")


def test_batchnorm_and_folding(rng):
    x = rng.standard_normal((2, 17, 5, 6)).astype(np.float32)
    mean, var = rng.standard_normal(17).astype(np.float32), rng.uniform(0.5, 2, 17).astype(np.float32)
    g, b = rng.uniform(0.5, 1.5, 17).astype(np.float32), rng.standard_normal(17).astype(np.float32)
    ref = F.batch_norm(t(x), t(mean), t(var), t(g), t(b), False, 0.1, 1e-5).numpy()
    assert_close(ops.batch_norm(x, mean, var, g, b), ref, 1e-5, "batchnorm")
    w = rng.standard_normal((17, 4, 3, 3)).astype(np.float32)
    xi = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    wf, bf = ops.fold_batchnorm(w, mean, var, g, b)
    conv_bn = F.batch_norm(F.conv2d(t(xi), t(w), padding=1), t(mean), t(var), t(g), t(b), False, 0.1, 1e-5)
    assert_close(ops.conv2d(xi, wf, bf, padding=1), conv_bn.numpy(), 2e-5, "folded conv+bn")


@pytest.mark.parametrize("n", [1, 7, 8, 9, 15, 16, 17, 33, 1000])
def test_activations(isa, rng, n):
    x = (rng.standard_normal(n) * 8).astype(np.float32)
    x[0] = -100.0
    if n > 1:
        x[1] = 90.0
    y = both_thread_counts(lambda k: ops.silu(x, isa=isa, num_threads=k))
    assert_close(y, F.silu(t(x)).numpy(), 1e-6, "silu")
    np.testing.assert_array_equal(ops.relu(x, isa=isa), F.relu(t(x)).numpy())


def test_silu_extreme_inputs(isa):
    """exp's range limits must not leak: silu(x) ~ -0 for very negative x
    (not x / FLT_MAX-ish), x for very positive x, at every magnitude."""
    x = np.array([-3e38, -1e30, -1e6, -200.0, -104.0, -88.8, -87.0, 87.0, 88.8, 104.0, 200.0, 1e6, 1e30, 3e38],
                 np.float32)
    y = ops.silu(x, isa=isa).astype(np.float64)
    ref = F.silu(t(x)).double().numpy()
    neg = x < 0
    assert np.all(np.abs(y[neg] - ref[neg]) <= 1e-30), (y[neg], ref[neg])
    np.testing.assert_allclose(y[~neg], ref[~neg], rtol=1e-6)


@pytest.mark.parametrize("d", [1, 7, 8, 9, 16, 17, 33, 144, 240])
def test_layer_norm(isa, rng, d):
    x = (rng.standard_normal((3, 5, d)) * 3 + 2).astype(np.float32)
    g, b = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
    y = both_thread_counts(lambda n: ops.layer_norm(x, g, b, 1e-5, isa=isa, num_threads=n))
    assert_close(y, F.layer_norm(t(x), (d,), t(g), t(b), 1e-5).numpy(), 1e-5, "layernorm")


@pytest.mark.parametrize("shape", [(3, 10, 6, 7), (1, 128, 32, 32), (2, 17, 5, 3), (1, 3, 1, 1), (2, 33, 9, 4)])
def test_group_norm1(isa, rng, shape):
    """Whole-image statistics whatever the thread split (the SIMD kernel splits
    pixel rows, so a batch of one uses both threads); a large offset checks the
    mean is taken accurately before the variance."""
    x = (rng.standard_normal(shape) * 2 + 30).astype(np.float32)
    g, b = rng.standard_normal(shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
    y = both_thread_counts(lambda n: ops.group_norm1(x, g, b, isa=isa, num_threads=n))
    assert_close(y, F.group_norm(t(x), 1, t(g), t(b), 1e-5).numpy(), 1e-5, "groupnorm")


@pytest.mark.parametrize("seqs,n,d,heads", [(4, 256, 144, 4), (4, 16, 64, 4), (3, 17, 48, 4), (2, 64, 80, 4),
                                            (1, 1, 16, 1), (5, 33, 96, 2), (4, 49, 240, 4),
                                            (2, 20, 100, 1), (2, 9, 130, 2)])
def test_attention(isa, rng, seqs, n, d, heads):
    qkv = rng.standard_normal((seqs, n, 3 * d)).astype(np.float32)
    y = both_thread_counts(lambda k: ops.multi_head_attention(qkv, heads, isa=isa, num_threads=k))
    q, kk, v = t(qkv).reshape(seqs, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(q, kk, v).transpose(1, 2).reshape(seqs, n, d)
    assert_close(y, ref.numpy(), 1e-5, "attention")


@pytest.mark.parametrize("hw", [(2, 2), (8, 6), (32, 32)])
def test_patch_attention_equals_unfold_attention_fold(isa, rng, hw):
    """The fused kernel's addressing is exactly MobileViT's unfold/fold."""
    B, d, heads = 2, 48, 4
    x = rng.standard_normal((B, 3 * d, *hw)).astype(np.float32)
    tokens = ops.unfold(x, 2)
    att = ops.multi_head_attention(tokens, heads, isa="ref")
    ref = ops.fold(att, B, hw[0], hw[1], 2)
    y = ops.patch_attention(x, heads, 2, isa=isa)
    assert_close(y, ref, 1e-5, "patch attention")


def test_unfold_fold_match_references(rng):
    """Unfold layout of spec section 3.1, checked against the reshape chain
    the references use, and fold as its inverse."""
    B, C, H, W = 2, 5, 6, 8
    x = rng.standard_normal((B, C, H, W)).astype(np.float32)
    tx = t(x)
    ref = (tx.reshape(B * C * (H // 2), 2, W // 2, 2).transpose(1, 2)
           .reshape(B, C, (H // 2) * (W // 2), 4).transpose(1, 3).reshape(B * 4, -1, C))
    tokens = ops.unfold(x, 2)
    np.testing.assert_array_equal(tokens, ref.numpy())
    np.testing.assert_array_equal(ops.fold(tokens, B, H, W, 2), x)


@pytest.mark.parametrize("src,dst", [((7, 7), (8, 8)), ((8, 8), (7, 7)), ((15, 9), (16, 10)), ((1, 1), (5, 3)),
                                     ((13, 17), (6, 33))])
@pytest.mark.parametrize("align", [False, True])
def test_bilinear_resize(rng, src, dst, align):
    x = rng.standard_normal((2, 9, *src)).astype(np.float32)
    y = both_thread_counts(lambda n: ops.interpolate_bilinear(x, dst, align_corners=align, num_threads=n))
    ref = F.interpolate(t(x), size=dst, mode="bilinear", align_corners=align)
    assert_close(y, ref.numpy(), 1e-5, "resize")


def test_pool_concat_add(rng):
    x = rng.standard_normal((3, 17, 7, 9)).astype(np.float32)
    assert_close(ops.global_avg_pool(x), t(x).mean((2, 3)).numpy(), 1e-6, "gap")
    y = rng.standard_normal((3, 5, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(ops.concat(x, y), torch.cat([t(x), t(y)], 1).numpy())
    z = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.add(x, z), x + z)


def test_op_errors(rng):
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="input channels"):
        ops.conv2d(x, np.zeros((3, 5, 3, 3), np.float32), padding=1)
    with pytest.raises(ValueError, match="bias"):
        ops.conv2d(x, np.zeros((3, 4, 3, 3), np.float32), np.zeros(2, np.float32), padding=1)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        ops.conv2d(np.zeros((1, 4, 1, 1), np.float32), np.zeros((3, 4, 3, 3), np.float32))
    with pytest.raises(ValueError):
        ops.multi_head_attention(np.zeros((1, 4, 10), np.float32), 4)
    with pytest.raises(ValueError, match="multiples"):
        ops.patch_attention(np.zeros((1, 12, 3, 4), np.float32), 2)
    with pytest.raises(ValueError, match="ISA"):
        ops.silu(np.zeros(3, np.float32), isa="sse9")
    with pytest.raises(TypeError):
        ops.silu(np.array(["a", "b"]))


@pytest.mark.parametrize("hw", [(2, 2), (8, 6), (16, 16), (4, 34)])
@pytest.mark.parametrize("d", [1, 7, 16, 33])
def test_separable_attention_matches_v2_reference(isa, rng, hw, d):
    """Against torch on the unfolded [B, D, P, N] layout, as timm computes it."""
    B = 2
    qkv = rng.standard_normal((B, 1 + 2 * d, *hw)).astype(np.float32)
    y = both_thread_counts(lambda n: ops.separable_attention(qkv, 2, isa=isa, num_threads=n))
    x = t(qkv)
    H, W = hw
    u = x.reshape(B, 1 + 2 * d, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, 1 + 2 * d, 4, -1)
    q, k, v = u.split([1, d, d], dim=1)
    ctx = (k * q.softmax(dim=-1)).sum(dim=-1, keepdim=True)
    out = F.relu(v) * ctx.expand_as(v)
    ref = out.reshape(B, d, 2, 2, H // 2, W // 2).permute(0, 1, 4, 2, 5, 3).reshape(B, d, H, W)
    assert_close(y, ref.numpy(), 1e-5, "separable attention")


def test_crop_pad(rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(ops.crop_pad(x, (4, 6)), x[:, :, :4, :6])
    y = ops.crop_pad(x, (6, 9))
    np.testing.assert_array_equal(y[:, :, :5, :7], x)
    assert not y[:, :, 5:].any() and not y[:, :, :, 7:].any()


def test_regressions_found_by_fuzzing(isa):
    """Huge dilation/padding wrapped the output-size arithmetic (segfault in
    the SIMD depthwise kernel); fold's shape check overflowed int; empty
    tensors spun over every position."""
    import time
    from mobilevit import _C
    x = np.ones((3, 7, 1, 3), np.float32)
    w = np.ones((3, 1, 3, 3), np.float32)
    for dil in (2 ** 31 - 1, 2 ** 20):
        with pytest.raises(ValueError, match="dilation"):
            _C.dwconv2d(x, w, None, 3, 3, dil, 0, ops._isa(isa), 1)
        with pytest.raises(ValueError, match="dilation"):
            ops.conv2d(np.ones((1, 3, 7, 7), np.float32), np.ones((2, 3, 3, 3), np.float32), dilation=dil)
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d(np.ones((1, 3, 7, 7), np.float32), np.ones((2, 3, 3, 3), np.float32), padding=2 ** 30)
    with pytest.raises(ValueError, match="fold"):
        ops.fold(np.ones((4, 1, 1), np.float32), 2 ** 30 + 1, 4, 1, patch_size=(4, 1), num_threads=1)
    t0 = time.perf_counter()
    assert _C.unfold(np.empty((1, 2 ** 27, 1, 0), np.float32), 1, 1, 1).shape == (1, 2 ** 27, 0)
    assert time.perf_counter() - t0 < 1.0
