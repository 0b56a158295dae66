"""Issue 12, item 3 (and the model-side parts of items 2, 5, 6): every public
method is safe while other threads run forward on the same model, per-call
thread counts are validated, the documented minimum input size is enforced,
segment() is bounded by the mask, and a model owns its parameters."""
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest

import mobilevit
from mobilevit import testing
from mobilevit import ops

SIZES = [(64, 64), (97, 131), (160, 128)]


def _other_weights(model, seed):
    rng = np.random.default_rng(seed)
    return {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 0.05 * (np.abs(v).mean() + 1e-3))
            if not k.endswith("running_var") else v * rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
            for k, v in model.state_dict().items()}


def _expected(name, weights, xs):
    """Every result a forward may legally return: weights A or B, Winograd on
    or off (a few ulp apart); fusion is bit-identical, so it adds nothing."""
    out = {i: [] for i in range(len(xs))}
    for w in weights:
        m = mobilevit.create_model(name, weights=w)
        for wino in (True, False):
            m.set_winograd(wino)
            for i, x in enumerate(xs):
                out[i].append(m(x))
    return out


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050"])
def test_setters_while_forward_runs_give_old_or_new_never_a_mix(name):
    base = mobilevit.create_model(name, seed=3)
    wa, wb = base.state_dict(), _other_weights(base, 7)
    rng = np.random.default_rng(0)
    xs = [rng.random((1 + i % 2, 3, h, w), dtype=np.float32) for i, (h, w) in enumerate(SIZES)]
    legal = _expected(name, (wa, wb), xs)
    model = mobilevit.create_model(name, weights=wa)
    stop = threading.Event()
    errors, bad, done = [], [], [0]

    def forward_loop(k):
        i = k
        while not stop.is_set():
            i = (i + 1) % len(xs)
            try:
                y = model(xs[i], num_threads=1 + (i % 2))
            except Exception as e:            # noqa: BLE001 - any exception is a failure here
                errors.append(repr(e))
                return
            if not any(y.shape == e.shape and np.array_equal(y, e) for e in legal[i]):
                bad.append((i, y.shape))
            done[0] += 1

    def setter_loop():
        r = np.random.default_rng(1)
        flip = 0
        while not stop.is_set():
            op = int(r.integers(0, 5))
            try:
                if op == 0:
                    flip ^= 1
                    model.load_state_dict(wb if flip else wa)
                elif op == 1:
                    model.set_winograd(bool(r.integers(0, 2)))
                elif op == 2:
                    model.set_fusion(int(r.choice([-1, 0, 256 * 1024, 4096])))
                elif op == 3:
                    model.set_memory_limit(int(r.choice([0, 2 ** 34])))
                else:
                    testing.graph(model).release()
            except Exception as e:            # noqa: BLE001
                errors.append("setter: " + repr(e))
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=forward_loop, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=setter_loop))
    try:
        for t in threads:
            t.start()
        time.sleep(4.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    assert not bad, f"{len(bad)} of {done[0]} results matched neither state: {bad[:5]}"
    assert done[0] >= 20


def test_model_level_graph_options_before_and_after_build():
    m = mobilevit.create_model("mobilevit_xxs")          # no network built yet
    m.set_fusion(-1)
    m.set_winograd(False)
    g = testing.graph(m)
    assert (g.get_fusion(), g.get_winograd()) == (-1, False)
    m.set_fusion(None)
    assert g.get_fusion() == testing.FUSE_MIN_BYTES
    for bad in (-2, 1.5, "0", True):
        with pytest.raises(ValueError):
            m.set_fusion(bad)


def test_graph_settings_survive_a_reload():
    m = mobilevit.create_model("mobilevit_xxs")
    g = testing.graph(m)
    g.set_fusion(-1)
    g.set_winograd(False)
    m.set_memory_limit(123 * 2 ** 20)
    m.load_state_dict(_other_weights(m, 2))
    g2 = testing.graph(m)
    assert g2 is not g
    assert (g2.get_fusion(), g2.get_winograd(), g2.get_max_bytes()) == (-1, False, 123 * 2 ** 20)


BAD_THREADS = [0, -1, -7, 1025, 10 ** 6, 2 ** 40]
NOT_INTS = [2.5, "2", True, None.__class__]


@pytest.mark.parametrize("n", BAD_THREADS)
def test_per_call_num_threads_validated_like_set_num_threads(n):
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=3)
    x = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(ValueError, match="num_threads"):
        mobilevit.set_num_threads(n)
    calls = [lambda: m(x, num_threads=n), lambda: m.forward_features(x, num_threads=n),
             lambda: m.segment(x, num_threads=n), lambda: m.profile(x, repeats=1, num_threads=n),
             lambda: ops.silu(x, num_threads=n), lambda: ops.conv1x1(x, np.ones((2, 3, 1, 1)), num_threads=n),
             ] + ([lambda: testing.graph(m).run(x, (1,), n)] if n else [])   # 0 = default in C
    for call in calls:
        with pytest.raises(ValueError, match="num_threads"):
            call()


@pytest.mark.parametrize("n", NOT_INTS)
def test_per_call_num_threads_must_be_an_int(n):
    m = mobilevit.create_model("mobilevit_xxs")
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match="num_threads"):
        m(x, num_threads=n)
    with pytest.raises(ValueError, match="num_threads"):
        mobilevit.set_num_threads(n)


def test_num_threads_limits_work_and_agree():
    m = mobilevit.create_model("mobilevit_xxs")
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    y1 = m(x, num_threads=1)
    np.testing.assert_array_equal(m(x, num_threads=mobilevit.threads.MAX_THREADS), y1)
    np.testing.assert_array_equal(m(x, num_threads=np.int64(2)), y1)


def test_chunks_of_a_worker_openmp_never_started_are_taken_by_the_others():
    """Every worker owns a share of each layer's chunks and takes its own first; with
    OMP_THREAD_LIMIT=1 the second worker of a 2- or 3-thread call never exists, and the
    one worker running must take all of its chunks (same bits as one thread)."""
    code = textwrap.dedent("""
        import numpy as np, mobilevit
        m = mobilevit.create_model("mobilevit_xxs")
        x = np.random.default_rng(1).random((1, 3, 96, 128), dtype=np.float32)
        one = m(x, num_threads=1)
        print(all(np.array_equal(m(x, num_threads=n), one) for n in (2, 3)))
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(mobilevit.__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_THREAD_LIMIT": "1", "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "True"


def test_huge_omp_num_threads_is_clamped_not_fatal():
    """OMP_NUM_THREADS=100000 used to reach the plan and OpenMP (segfault)."""
    code = textwrap.dedent("""
        import numpy as np, mobilevit
        n = mobilevit.get_num_threads()
        m = mobilevit.create_model("mobilevit_xxs")
        y = m(np.zeros((1, 3, 64, 64), np.float32))
        print(n, y.shape)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(mobilevit.__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "100000", "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[0] == str(mobilevit.threads.MAX_THREADS)


# ---- minimum input size, per family ------------------------------------------------------------

FAMILIES = [("mobilevit_xxs", {}), ("mobilevitv2_050", {}), ("mobilevitv2_050", {"odd_size": "crop"}),
            ("mobilevitv2_050", {"odd_size": "crop", "features_only": True}),
            ("deeplabv3_mobilevit_xxs", {}), ("deeplabv3_mobilevitv2_050", {"odd_size": "crop"}),
            ("deeplabv3_mobilevitv2_050", {"odd_size": "crop", "output_stride": 8})]


@pytest.mark.parametrize("name,kw", FAMILIES)
def test_documented_minimum_is_what_is_enforced(name, kw):
    m = mobilevit.create_model(name, **kw)
    lo = m.min_input_size
    expect = 33 if (kw.get("odd_size") == "crop" and not name.startswith("deeplab")) else 32
    assert lo == expect
    for h, w in [(lo, lo), (lo, lo + 7), (lo + 1, lo)]:
        m(np.zeros((1, 3, h, w), np.float32))
    for h, w in [(lo - 1, lo), (lo, lo - 1)]:
        with pytest.raises(ValueError, match=f"at least {lo}"):
            m(np.zeros((1, 3, h, w), np.float32))


def test_v2_crop_minimum_matches_transformers():
    """HF's MobileViTv2 itself cannot run 32x32 (its last map is 1x1), and runs 33x33."""
    torch = pytest.importorskip("torch")
    from transformers import MobileViTV2Config, MobileViTV2Model
    hf = MobileViTV2Model(MobileViTV2Config(width_multiplier=0.5)).eval()
    with torch.no_grad():
        hf(torch.zeros(1, 3, 33, 33))
        with pytest.raises(Exception):
            hf(torch.zeros(1, 3, 32, 32))


def test_dimensions_of_2_31_refused_by_name():
    m = mobilevit.create_model("mobilevit_xxs")
    huge = np.broadcast_to(np.float32(0), (1, 3, 64, 2 ** 31))
    with pytest.raises((ValueError, MemoryError), match="2\\*\\*31|MiB"):
        m(huge)


# ---- segment: fused upsampling + argmax ------------------------------------------------------

@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (64, 96), (129, 33)])
def test_resize_argmax_equals_torch(align, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 5, 6, 9)).astype(np.float32)
    logits[0, 2] = logits[0, 1]                          # exact ties: the first index wins
    logits[1, 3, 2, 4] = np.nan                          # NaN wins, as in torch
    ours = ops.interpolate_bilinear_argmax(logits, size, align_corners=align)
    ref = torch.nn.functional.interpolate(torch.from_numpy(logits), size=size, mode="bilinear",
                                          align_corners=align).argmax(dim=1).numpy()
    via_resize = ops.interpolate_bilinear(logits, size, align_corners=align)
    assert ours.dtype == np.int64 and ours.shape == (2, *size)
    np.testing.assert_array_equal(ours, ref)
    # and the same floats as our own resize kernel followed by an argmax (NaN first, as torch)
    nan_first = np.where(np.isnan(via_resize).any(axis=1), np.isnan(via_resize).argmax(axis=1),
                         np.nan_to_num(via_resize, nan=-np.inf).argmax(axis=1))
    np.testing.assert_array_equal(ours, nan_first)


def test_segment_memory_is_the_mask_not_the_class_maps():
    logits = np.random.default_rng(0).standard_normal((1, 21, 64, 64)).astype(np.float32)
    out = (2048, 2048)
    tracemalloc.start()
    try:
        lab = ops.interpolate_bilinear_argmax(logits, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    mask_bytes = lab.nbytes
    assert peak < 1.5 * mask_bytes, (peak, mask_bytes)          # float maps would be 21 * 4 / 8 = 10.5x
    assert peak < 21 * 4 * out[0] * out[1] / 4


def test_segment_align_corners_follows_the_convention():
    m = mobilevit.create_model("deeplabv3_mobilevit_xxs", num_classes=4, seed=2)
    x = np.random.default_rng(1).random((1, 3, 96, 80), dtype=np.float32)
    logits = m(x)
    for align in (False, True):
        up = ops.interpolate_bilinear(logits, (96, 80), align_corners=align)
        np.testing.assert_array_equal(m.segment(x, align_corners=align), up.argmax(axis=1))


# ---- a model owns its parameters --------------------------------------------------------------

def test_parameters_are_private_copies(tmp_path):
    m = mobilevit.create_model("mobilevit_xxs", seed=4)
    sd = m.state_dict()
    path = tmp_path / "w.npy"
    key = "stem.conv.weight"
    np.save(path, sd[key])
    mm = np.load(path, mmap_mode="r+")
    sd[key] = mm
    m2 = mobilevit.create_model("mobilevit_xxs", weights=sd)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    before = m2(x)
    mm[...] = 0.0
    mm.flush()
    del mm
    os.truncate(path, 0)
    np.testing.assert_array_equal(m2(x), before)
    assert np.abs(m2.state_dict()[key]).sum() > 0
    assert not np.shares_memory(m2.params[key], sd[key])
