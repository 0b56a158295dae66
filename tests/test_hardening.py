"""Hardening (issue 7): concurrency, fork, pickling, leaks, memory caps and
hostile inference inputs (checklist items 24-35)."""
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mobilevit


@pytest.fixture(scope="module")
def xxs():
    return mobilevit.create_model("mobilevit_xxs", seed=11)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def test_eight_threads_mixed_sizes_match_serial(xxs):
    """One model from 8 Python threads at once, different input sizes: the
    per-shape plan must not race (checklist 32)."""
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (97, 131), (64, 64), (128, 96), (33, 47), (97, 131), (160, 160), (64, 64)]
    xs = [rng.random((1 + i % 2, 3, h, w), dtype=np.float32) for i, (h, w) in enumerate(sizes)]
    serial = [xxs(x) for x in xs]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        results = [[None] * 5 for _ in xs]
        barrier = threading.Barrier(len(xs))

        def work(i):
            barrier.wait()
            for r in range(5):
                results[i][r] = xxs(xs[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(old)
    for i, expected in enumerate(serial):
        for r in range(5):
            np.testing.assert_array_equal(results[i][r], expected)


def _pkg_env(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(mobilevit.__file__)))
    return {**os.environ, "PYTHONPATH": root}


def test_fork_after_use_never_hangs(tmp_path):
    """libgomp's pool does not survive fork: children run single-threaded
    and give the same answer (checklist 33)."""
    script = textwrap.dedent("""
        import multiprocessing as mp, numpy as np, mobilevit
        m = mobilevit.create_model("mobilevit_xxs")
        x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
        mobilevit.set_num_threads(2)
        y = m(x)
        def child(q):
            q.put((mobilevit.get_num_threads(), m(x)))
        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(q,))
            p.start()
            nth, out = q.get(timeout=60)
            p.join(60)
            assert p.exitcode == 0, p.exitcode
            assert nth == 1, nth
            assert np.array_equal(out, y)
            print("ok")
    """)
    path = tmp_path / "fork_child.py"
    path.write_text(script)
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120,
                       env=_pkg_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_pickle_is_small_and_exact(xxs):
    x = np.random.default_rng(1).random((1, 3, 80, 64), dtype=np.float32)
    blob = pickle.dumps(xxs)
    weight_bytes = sum(v.nbytes for v in xxs.params.values())
    assert len(blob) < weight_bytes * 1.02 + 65536          # config + weights, no raw pointers
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back(x), xxs(x))
    seg = mobilevit.create_model("deeplabv3_mobilevitv2_050", num_classes=3, odd_size="crop")
    seg2 = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(seg2(x), seg(x))


def test_rss_flat_over_5000_calls(xxs):
    x = np.random.default_rng(2).random((1, 3, 32, 32), dtype=np.float32)
    for _ in range(200):
        xxs(x)
    gc.collect()
    before = _rss_mb()
    rc = sys.getrefcount(x)
    for _ in range(5000):
        xxs(x)
    gc.collect()
    assert sys.getrefcount(x) == rc
    assert _rss_mb() - before < 4.0


def test_rss_flat_over_model_load_free_cycles(xxs):
    sd = xxs.state_dict()
    x = np.random.default_rng(3).random((1, 3, 64, 64), dtype=np.float32)

    def cycle():
        m = mobilevit.create_model("mobilevit_xxs", weights=sd)
        m(x)
        del m
        gc.collect()

    for _ in range(3):
        cycle()
    before = _rss_mb()
    for _ in range(20):
        cycle()
    assert _rss_mb() - before < 8.0


def test_huge_input_refused_before_allocating():
    m = mobilevit.create_model("mobilevit_xxs")
    huge = np.broadcast_to(np.float32(0.5), (1, 3, 40000, 40000))     # no memory behind it
    with pytest.raises(MemoryError, match="MiB"):
        m(huge)
    # activation_bytes is what a call of that shape allocates in the mode it runs in
    # (batch 8 on 2 threads: two single-image arenas, ~9 MB for XXS at 256x256)
    m.set_memory_limit(4 * 2 ** 20)
    assert m.activation_bytes(8, 256, 256) > 4 * 2 ** 20
    with pytest.raises(MemoryError):
        m(np.broadcast_to(np.float32(0), (8, 3, 256, 256)))


def test_extreme_and_nonfinite_values(xxs):
    x = np.full((1, 3, 64, 64), 1e30, np.float32)
    x[0, 1] = -1e30
    a, b = xxs(x), xxs(x)
    np.testing.assert_array_equal(a, b)                      # deterministic, no crash
    n = np.random.default_rng(4).random((1, 3, 64, 64), dtype=np.float32)
    n[0, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        xxs(n)
    y = xxs(n, check_finite=False)
    assert np.isnan(y).any()


def test_forked_flag_not_set_in_parent():
    assert not mobilevit._C.forked_child()
