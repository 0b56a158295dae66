"""Multi-scale variable-batch sampler, pinned to ml-cvnets' algorithm (spec section 6)."""

import math
import random
import subprocess
import sys

import pytest

from mobilevit.sampler import (VariableBatchSampler, batch_size_for, image_batch_tuples, make_divisible,
                               multi_scale_sizes, nearest_scale)

S = [(160, 160), (192, 192), (256, 256), (288, 288), (320, 320)]
HEAD = [(160, 160, 327), (192, 192, 227), (256, 256, 128), (288, 288, 101), (320, 320, 81)]
V01_1GPU = [(160, 160, 327), (192, 192, 227), (256, 256, 128), (288, 288, 128), (320, 320, 128)]
V01_8GPU = [(160, 160, 328), (192, 192, 224), (256, 256, 128), (288, 288, 128), (320, 320, 128)]


# ----------------------------------------------------------------------------- scales and batch sizes

def test_make_divisible():
    assert [make_divisible(v, 32) for v in (160, 200, 240, 280, 320, 256)] == [160, 192, 256, 288, 320, 256]
    assert make_divisible(10, 32) == 32                 # never below the divisor
    assert make_divisible(327, 8) == 328 and make_divisible(227, 8) == 224
    assert make_divisible(37, 32) == 64                 # 32 < 0.9 * 37, so one divisor is added


def test_paper_scale_set_and_batches():
    assert multi_scale_sizes() == S
    assert image_batch_tuples() == HEAD
    assert image_batch_tuples(v01=True) == V01_1GPU
    assert image_batch_tuples(v01=True, n_replicas=8) == V01_8GPU
    assert [batch_size_for(h, w) for h, w in S] == [327, 227, 128, 101, 81]
    assert [batch_size_for(h, w, v01=True, n_replicas=8) for h, w in S] == [328, 224, 128, 128, 128]
    # pixels per batch stay close to the base batch's under the HEAD rule
    for h, w, b in HEAD:
        assert abs(b * h * w / (256 * 256 * 128) - 1) < 0.02


def test_batch_formula_against_spec_text():
    # spec 6.1: batch_t = max(1, int(round(n / (h*w), 2))) with n = base_w * base_h * base_b (HEAD);
    # v0.1: max(base_b, ...) then make_divisible(., n_gpus). Checked over many sizes, not just S.
    for h in range(32, 513, 32):
        for w in (64, 96, 224, 320):
            n = 224 * 192 * 64
            head = max(1, int(round(n / (h * w), 2)))
            assert batch_size_for(h, w, base_size=(224, 192), base_batch_size=64) == head
            assert batch_size_for(h, w, base_size=(224, 192), base_batch_size=64, v01=True, n_replicas=4) == \
                make_divisible(max(64, head), 4)


def test_non_square_and_other_ranges():
    sizes = multi_scale_sizes(base_size=224, min_size=128, max_size=384, n_scales=3)
    assert sizes == [(128, 128), (224, 224), (256, 256), (384, 384)]
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in sizes)
    rect = multi_scale_sizes(base_size=(256, 192), min_size=(160, 128), max_size=(320, 256), v01=True)
    assert rect == [(160, 128), (192, 160), (256, 192), (288, 224), (320, 256)]
    with pytest.raises(ValueError):
        multi_scale_sizes(min_size=320, max_size=160)
    with pytest.raises(ValueError):
        multi_scale_sizes(n_scales=0)


def test_nearest_scale():
    assert nearest_scale(256, 256, S) == (256, 256)
    assert nearest_scale(300, 300, S) == (288, 288)
    assert nearest_scale(170, 170, S) == (160, 160)     # log distance: 160 is 6 %, 192 is 13 % away
    assert nearest_scale(1000, 900, S) == (320, 320)
    assert nearest_scale(480, 640, [(256, 256), (240, 320), (320, 240)]) == (240, 320)   # aspect wins
    tie = math.sqrt(160 * 192)                          # equidistant in log space: smaller area wins
    assert nearest_scale(tie, tie, [(192, 192), (160, 160)]) == (160, 160)
    assert nearest_scale(200, 200, HEAD) == (192, 192)   # (h, w, batch) tuples accepted
    assert nearest_scale(200, 200, [160, 256]) == (160, 160)
    with pytest.raises(ValueError):
        nearest_scale(0, 10, S)
    with pytest.raises(ValueError):
        nearest_scale(10, 10, [])


# ----------------------------------------------------------------------------- iteration

def _cvnets_head_reference(n, epoch, tuples, rank=0, world=1):
    """ml-cvnets HEAD iteration, written from the spec text: global random seeded with the epoch."""
    state = random.getstate()
    try:
        per_rank = int(math.ceil(n / world))
        idx = list(range(n))
        idx += idx[: per_rank * world - n]
        random.seed(epoch)
        idx = list(idx)
        random.shuffle(idx)
        mine = idx[rank:len(idx):world]
        batches, start = [], 0
        while start < len(mine):
            h, w, bs = random.choice(tuples)
            ids = mine[start:min(start + bs, len(mine))]
            if len(ids) != bs:
                ids += mine[: bs - len(ids)]
            start += bs
            batches.append([(h, w, i) for i in ids])
        return batches
    finally:
        random.setstate(state)


@pytest.mark.parametrize("n,world", [(5000, 1), (4099, 3), (2048, 8)])
@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_matches_cvnets_head_sequence(n, world, epoch):
    for rank in range(world):
        s = VariableBatchSampler(n, base_batch_size=32, rank=rank, world_size=world, seed=0)
        s.set_epoch(epoch)
        got = list(s)
        assert got == _cvnets_head_reference(n, epoch, list(s.batch_tuples), rank, world)
        assert len(s) == len(got)


def test_deterministic_per_epoch_and_epochs_differ():
    a, b = VariableBatchSampler(3000, seed=5), VariableBatchSampler(3000, seed=5)
    runs = {}
    for e in range(4):
        a.set_epoch(e)
        b.set_epoch(e)
        first = list(a)
        assert first == list(a) == list(b)          # repeatable, and independent of history
        runs[e] = first
    assert len({tuple(map(tuple, r)) for r in runs.values()}) == 4
    a.set_epoch(2)
    assert list(a) == runs[2]                       # going back gives the same epoch again
    other_seed = VariableBatchSampler(3000, seed=6)
    other_seed.set_epoch(0)
    assert list(other_seed) != runs[0]


def test_batches_well_formed_and_cover_dataset():
    n = 3001
    s = VariableBatchSampler(n, seed=1)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        sizes = {(h, w): b for h, w, b in s.batch_tuples}
        seen = []
        for batch in batches:
            (h, w), = {(h, w) for h, w, _ in batch}       # one resolution per batch
            assert len(batch) == sizes[(h, w)]            # batch size follows the resolution
            seen += [i for _, _, i in batch]
        assert set(seen) == set(range(n))                 # every index appears
        total = sum(len(bt) for bt in batches)
        assert total - n < max(sizes.values())            # only the last batch is topped up
        assert len(s) == len(batches)
        used = set(h_w for h_w in {(b[0][0], b[0][1]) for b in batches})
        assert len(used) >= 3                             # several scales really are drawn


def test_last_batch_topped_up_from_start():
    s = VariableBatchSampler(1000, seed=3, batch_tuples=[(256, 256, 300)])
    batches = list(s)
    assert [len(b) for b in batches] == [300] * 4
    flat = [i for b in batches for _, _, i in b]
    assert flat[1000:] == flat[:200]
    assert sorted(flat[:1000]) == list(range(1000))


def test_tiny_dataset_wraps_to_full_batch():
    s = VariableBatchSampler(5, batch_tuples=[(160, 160, 12)])
    (batch,) = list(s)
    ids = [i for _, _, i in batch]
    assert len(ids) == 12 and set(ids) == set(range(5))


def test_sharding_partitions_indices_and_ranks_agree():
    n, world = 1003, 4
    samplers = [VariableBatchSampler(n, base_batch_size=16, rank=r, world_size=world, seed=9) for r in range(world)]
    for s in samplers:
        s.set_epoch(3)
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1                         # same number of steps
    for step in zip(*per_rank):
        assert len({(b[0][0], b[0][1], len(b)) for b in step}) == 1      # same scale at every step
    chunks = [s._plan()[0] for s in samplers]
    assert all(len(c) == math.ceil(n / world) for c in chunks)
    flat = sorted(i for c in chunks for i in c)
    padded = sorted(list(range(n)) + list(range(math.ceil(n / world) * world - n)))
    assert flat == padded                                                # a partition of the padded list
    assert set(flat) == set(range(n))


def test_v01_mode_and_validation():
    s = VariableBatchSampler(100, v01=True, world_size=8, rank=3)
    assert list(s.batch_tuples) == V01_8GPU
    assert list(VariableBatchSampler(100, v01=True, world_size=8, n_replicas=1).batch_tuples) == V01_1GPU
    assert VariableBatchSampler(range(77)).num_samples == 77             # a dataset works as num_samples
    no_shuffle = VariableBatchSampler(700, shuffle=False, batch_tuples=[(256, 256, 100)])
    assert [i for b in no_shuffle for _, _, i in b] == list(range(700))
    for bad in (dict(num_samples=0), dict(num_samples=10, rank=2, world_size=2),
                dict(num_samples=10, world_size=0), dict(num_samples=10, batch_tuples=[])):
        with pytest.raises(ValueError):
            VariableBatchSampler(**bad)


def test_torch_dataloader_batch_sampler():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, Dataset

    class Toy(Dataset):
        def __len__(self):
            return 700

        def __getitem__(self, key):
            h, w, index = key   # a real dataset would crop sample `index` to h x w; keep tensors small here
            return torch.full((3, h // 32, w // 32), float(index)), index

    sampler = VariableBatchSampler(700, base_batch_size=24, seed=2)
    sampler.set_epoch(1)
    expected = list(sampler)
    for workers in (0, 2):
        loader = DataLoader(Toy(), batch_sampler=sampler, num_workers=workers)
        assert len(loader) == len(expected)
        got = 0
        for (images, indices), batch in zip(loader, expected):
            h, w, _ = batch[0]
            assert images.shape == (len(batch), 3, h // 32, w // 32)
            assert indices.tolist() == [i for _, _, i in batch]
            assert torch.equal(images[:, 0, 0, 0], indices.float())
            got += 1
        assert got == len(expected)


def test_runtime_modules_do_not_import_torch():
    code = ("import sys, mobilevit.sampler, mobilevit.preprocess, mobilevit.imageio; "
            "bad = [m for m in ('torch', 'torchvision', 'transformers', 'timm') if m in sys.modules]; "
            "assert not bad, bad")
    import os
    import mobilevit
    root = os.path.dirname(os.path.dirname(os.path.abspath(mobilevit.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    # cwd away from the source tree, so the package imported is the one the
    # test process uses (the installed one in CI)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.path.dirname(root) or "/")
