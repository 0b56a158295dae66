"""3x3 / stride 1 / padding 1 convolutions by Winograd F(2x2, 3x3) and
F(4x4, 3x3): each kernel on every ISA against PyTorch and against the implicit-GEMM conv, over channel
counts that straddle the SIMD widths, spatial sizes with odd edges (partial
output tiles), one and two inputs (the fusion conv's concatenation), batch 1
and > 1; 1 and 2 threads bit-identical.  Then the model graphs with Winograd
on and off against timm.

Tolerance: 2e-5 of max(1, |ref|), as for the direct convs (test_ops.py):
F(2x2)'s transforms only add, subtract and halve, so the error stays a few ulp
of the input magnitudes; F(4x4)'s coefficients (up to 8) make it about ten
times that, still inside the same tolerance at these sizes (and ~1e-6 on
the models' logits, as the direct conv)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import mobilevit  # noqa: E402
from mobilevit import ops  # noqa: E402
from mobilevit import testing  # noqa: E402
from reference_models import assert_close  # noqa: E402


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def both_thread_counts(fn):
    y1, y2 = fn(1), fn(2)
    np.testing.assert_array_equal(y1, y2)
    return y1


ALGOS = ["winograd", "winograd4"]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 5), (8, 16), (16, 17), (17, 33), (33, 31), (48, 40)])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (5, 4), (8, 8), (9, 17), (32, 30)])
def test_winograd_matches_torch(isa, rng, cin, cout, hw, algo):
    B = 3 if hw[0] * hw[1] < 100 else 1
    x = rng.standard_normal((B, cin, *hw)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    y = both_thread_counts(lambda n: ops.conv2d(x, w, b, padding=1, act="silu", isa=isa, num_threads=n,
                                                algorithm=algo))
    ref = F.silu(F.conv2d(t(x), t(w), t(b), padding=1)).numpy()
    assert_close(y, ref, 2e-5, "winograd conv")
    direct = ops.conv2d(x, w, b, padding=1, act="silu", isa=isa, algorithm="direct")
    assert_close(y, direct, 2e-5, "winograd vs direct")


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("c1,c2", [(1, 1), (16, 16), (7, 25), (96, 96)])
def test_winograd_two_inputs(isa, rng, c1, c2, algo):
    """The fusion conv: conv3x3(cat(x, x2)) without building the concatenation."""
    x = rng.standard_normal((2, c1, 11, 6)).astype(np.float32)
    x2 = rng.standard_normal((2, c2, 11, 6)).astype(np.float32)
    w = (rng.standard_normal((24, c1 + c2, 3, 3)) * 0.2).astype(np.float32)
    y = both_thread_counts(lambda n: ops.conv2d(x, w, None, padding=1, x2=x2, isa=isa, num_threads=n,
                                                algorithm=algo))
    ref = F.conv2d(torch.cat([t(x), t(x2)], 1), t(w), padding=1).numpy()
    assert_close(y, ref, 2e-5, "winograd conv, two inputs")


def test_winograd_argument_checks(rng):
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    for kw in ({"stride": 2, "padding": 1}, {"padding": 2, "dilation": 2}, {"padding": 0},
               {"padding": 1, "residual": x}):
        for algo in ALGOS:
            with pytest.raises(ValueError, match="Winograd"):
                ops.conv2d(x, w, algorithm=algo, **kw)
    with pytest.raises(ValueError, match="algorithm"):
        ops.conv2d(x, w, padding=1, algorithm="fft")
    # auto picks Winograd only where it is eligible and wide enough; results agree either way
    for kw in ({"stride": 2, "padding": 1}, {"padding": 1}):
        assert_close(ops.conv2d(x, w, **kw), F.conv2d(t(x), t(w), **kw).numpy(), 2e-5, "auto")


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_xs"])
def test_models_with_and_without_winograd(isa, name):
    """v1 graphs run their local and fusion 3x3 convs by Winograd by default;
    switching it off gives the implicit-GEMM path; both match timm."""
    from reference_models import state_dict_numpy, timm_model
    ref_model = timm_model(name, seed=3)
    ours = mobilevit.create_model(name)
    ours.load_state_dict(state_dict_numpy(ref_model))
    x = np.random.default_rng(5).standard_normal((2, 3, 96, 160)).astype(np.float32)
    with torch.no_grad():
        ref = ref_model(t(x)).numpy()
    mobilevit.set_isa(isa)
    g = testing.graph(ours)
    try:
        on = ours(x)
        g.set_winograd(False)
        off = ours(x)
    finally:
        g.set_winograd(True)
    assert_close(on, ref, what=f"{name} winograd")
    assert_close(off, ref, what=f"{name} direct")
    assert not np.array_equal(on, off)        # the switch really changes the conv algorithm


@pytest.mark.parametrize("hw,batch", [((8, 8), 1), ((8, 8), 3), ((16, 12), 1), ((7, 40), 2)])
@pytest.mark.parametrize("nth", [2, 3, 8])
def test_winograd_small_maps_split_output_channels(isa, rng, hw, batch, nth):
    """Maps with fewer tile blocks than workers also split the output channels
    (each slice recomputes the block's input transform): the same result for
    every worker count, and the slices cover every channel (Cout = 100 is not
    a whole number of 32-column panels)."""
    x = rng.standard_normal((batch, 64, *hw)).astype(np.float32)
    w = (rng.standard_normal((100, 64, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(100).astype(np.float32)
    ref = F.conv2d(t(x), t(w), t(b), padding=1).numpy()
    for algo in ALGOS:
        y1 = ops.conv2d(x, w, b, padding=1, algorithm=algo, isa=isa, num_threads=1)
        yn = ops.conv2d(x, w, b, padding=1, algorithm=algo, isa=isa, num_threads=nth)
        np.testing.assert_array_equal(y1, yn)
        assert_close(yn, ref, 2e-5, f"{algo} {hw} x{batch}, {nth} threads")
