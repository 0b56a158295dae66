"""MobileViT's multi-scale variable-batch sampler (paper section 3.3; ml-cvnets ``variable_batch_sampler``).

Training at several resolutions, with the batch size scaled so that every batch holds about as many
pixels as a base batch: 128 images of 256x256 become 327 images of 160x160 or 81 of 320x320.
Pure Python (``random`` + ``numpy.linspace`` semantics); no torch import, yet usable as a
``torch.utils.data.DataLoader(dataset, batch_sampler=sampler)`` batch sampler. Each batch is a list
of ``(h, w, index)`` tuples; the dataset's ``__getitem__`` receives one tuple and crops/resizes
sample ``index`` to ``h`` x ``w`` (e.g. with ``Preprocess.resized(h, w)`` or a random resized crop).

Scale set (spec 6.1): ``n_scales`` values ``linspace(min, max, n_scales)`` plus the base size, each
passed through ``make_divisible(v, divisor)`` (= max(divisor, ⌊(v + divisor/2) / divisor⌋ · divisor),
plus one divisor if that fell below 0.9 v), heights paired with widths. Defaults (min 160, max 320,
5 scales, base 256x256, divisor 32) give S = {160, 192, 256, 288, 320}.

Batch size per scale, relative to the base (``base_batch_size`` images of ``base_size``):

* default (ml-cvnets HEAD): ``max(1, int(round(base_b · base_h · base_w / (h · w), 2)))``
  → 327, 227, 128, 101, 81;
* ``v01=True`` (ml-cvnets v0.1, the code that trained the released v1 weights): the same value
  clamped below at ``base_batch_size`` and rounded with ``make_divisible`` to a multiple of the
  number of replicas → 327, 227, 128, 128, 128 on 1 GPU; 328, 224, 128, 128, 128 on 8.

Iteration (spec 6.2, ml-cvnets HEAD semantics): the index list ``range(n)`` is padded to a multiple
of ``world_size`` by repeating its head; each epoch it is shuffled with ``random.Random(seed + epoch)``
(a fresh copy every epoch, so an epoch's order does not depend on earlier epochs); rank ``r``
takes ``indices[r::world_size]``; then, until the rank's indices are used up, a scale is drawn with
``rng.choice`` and the next ``batch`` indices form a batch. All ranks draw from identically seeded
generators and hold equally many indices, so they use the same resolution at every step. The last
batch is topped up with indices from the start of the rank's list (cyclically, so it is always full).
With ``seed=0`` the sequence is exactly ml-cvnets HEAD's (which calls ``random.seed(epoch)``).

Differences from ml-cvnets, on purpose: v0.1 shuffled its stored index and scale lists *in place*
every epoch (so epoch e's order depended on all earlier epochs); here every epoch is a pure function
of ``(seed, epoch)`` in both modes. The top-up wraps around when a batch is larger than a rank's
whole index list (ml-cvnets would yield a short batch); otherwise it is identical.
"""

from __future__ import annotations

import math
import random
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "make_divisible",
    "multi_scale_sizes",
    "batch_size_for",
    "image_batch_tuples",
    "nearest_scale",
    "VariableBatchSampler",
]

SizeLike = Union[int, Tuple[int, int], Sequence[int]]


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` (ml-cvnets / MobileNet rule, never < 90 % of value)."""
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, got {divisor}")
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


def _hw(value: SizeLike, field: str) -> Tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        h = w = int(value)
    else:
        try:
            h, w = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{field} must be an int or an (h, w) pair, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{field} must be positive, got {(h, w)}")
    return h, w


def _scale_pairs(base: Tuple[int, int], lo: Tuple[int, int], hi: Tuple[int, int], n_scales: int,
                 divisor: int, v01: bool) -> List[Tuple[int, int]]:
    if n_scales < 1:
        raise ValueError(f"n_scales must be >= 1, got {n_scales}")
    for axis in (0, 1):
        if lo[axis] > hi[axis]:
            raise ValueError(f"min size {lo} exceeds max size {hi}")
    dims = []
    for axis in (0, 1):  # heights, then widths
        values = np.linspace(lo[axis], hi[axis], n_scales)
        if v01:
            # v0.1: linspace order, base appended if absent, rounded after pairing
            vals = list(values)
            if base[axis] not in vals:
                vals.append(base[axis])
            dims.append(vals)
        else:
            # HEAD: a set (so the base is not duplicated), each value rounded, then sorted
            vals = set(values.tolist())
            vals.add(base[axis])
            dims.append(sorted(make_divisible(v, divisor) for v in vals))
    # zip truncates to the shorter list, exactly as ml-cvnets does
    return [(make_divisible(h, divisor), make_divisible(w, divisor)) for h, w in zip(dims[0], dims[1])]


def multi_scale_sizes(
    base_size: SizeLike = 256,
    min_size: SizeLike = 160,
    max_size: SizeLike = 320,
    n_scales: int = 5,
    divisor: int = 32,
    *,
    v01: bool = False,
) -> List[Tuple[int, int]]:
    """The sorted set of (h, w) training resolutions; the defaults give 160, 192, 256, 288, 320 (square).

    Sizes are ints (square) or (h, w). ``v01`` selects v0.1's pairing of heights with widths,
    which differs from HEAD only for non-square ranges.
    """
    pairs = _scale_pairs(_hw(base_size, "base_size"), _hw(min_size, "min_size"), _hw(max_size, "max_size"),
                         n_scales, divisor, v01)
    return sorted(set(pairs))


def batch_size_for(
    h: int,
    w: int,
    base_size: SizeLike = 256,
    base_batch_size: int = 128,
    *,
    v01: bool = False,
    n_replicas: int = 1,
) -> int:
    """Batch size used at resolution ``h`` x ``w`` (see module docstring for the two rules)."""
    bh, bw = _hw(base_size, "base_size")
    h, w = _hw((h, w), "size")
    if base_batch_size < 1:
        raise ValueError(f"base_batch_size must be >= 1, got {base_batch_size}")
    if n_replicas < 1:
        raise ValueError(f"n_replicas must be >= 1, got {n_replicas}")
    n_elements = bw * bh * base_batch_size
    scaled = int(round(n_elements / (h * w), 2))
    if not v01:
        return max(1, scaled)
    return make_divisible(max(base_batch_size, scaled), n_replicas)


def image_batch_tuples(
    base_size: SizeLike = 256,
    base_batch_size: int = 128,
    min_size: SizeLike = 160,
    max_size: SizeLike = 320,
    n_scales: int = 5,
    divisor: int = 32,
    *,
    v01: bool = False,
    n_replicas: int = 1,
) -> List[Tuple[int, int, int]]:
    """Sorted, de-duplicated (h, w, batch_size) tuples — ml-cvnets' ``img_batch_tuples``."""
    sizes = multi_scale_sizes(base_size, min_size, max_size, n_scales, divisor, v01=v01)
    return sorted({(h, w, batch_size_for(h, w, base_size, base_batch_size, v01=v01, n_replicas=n_replicas))
                   for h, w in sizes})


def nearest_scale(h: int, w: int, scales: Iterable) -> Tuple[int, int]:
    """The scale in ``scales`` closest to an ``h`` x ``w`` image, for bucketing images by resolution.

    ``scales``: ints (square) or (h, w[, batch]) tuples. Closeness is Euclidean distance in
    (log h, log w), i.e. ``log(sh/h)**2 + log(sw/w)**2`` — which weighs relative size (log area)
    and aspect ratio (log h/w) equally and does not depend on absolute scale: 300x300 is as far
    from 150x150 as from 600x600. Ties go to the smaller area, then to the earlier entry.
    """
    if not (h > 0 and w > 0):
        raise ValueError(f"image size must be positive, got {(h, w)}")
    lh, lw = math.log(h), math.log(w)
    best, best_key = None, None
    for position, scale in enumerate(scales):
        if isinstance(scale, (int, np.integer)):
            sh = sw = int(scale)
        else:
            sh, sw = int(scale[0]), int(scale[1])
        if sh <= 0 or sw <= 0:
            raise ValueError(f"scales must be positive, got {scale!r}")
        dist = (math.log(sh) - lh) ** 2 + (math.log(sw) - lw) ** 2
        key = (round(dist, 12), sh * sw, position)
        if best_key is None or key < best_key:
            best, best_key = (sh, sw), key
    if best is None:
        raise ValueError("scales is empty")
    return best


class VariableBatchSampler:
    """Multi-scale variable-batch sampler; yields lists of ``(h, w, index)`` tuples.

    ``num_samples``: dataset length (or the dataset itself). ``base_size``/``min_size``/``max_size``:
    int or (h, w). ``base_batch_size``: per-replica batch at the base size. ``rank``/``world_size``:
    this process's shard. ``v01``: ml-cvnets v0.1 batch sizes (clamped at the base batch, multiple of
    ``n_replicas``, default ``world_size``). ``batch_tuples``: use these (h, w, batch) tuples instead of
    generating them. Call ``set_epoch(e)`` before each epoch.
    """

    def __init__(
        self,
        num_samples,
        *,
        base_size: SizeLike = 256,
        base_batch_size: int = 128,
        min_size: SizeLike = 160,
        max_size: SizeLike = 320,
        n_scales: int = 5,
        divisor: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        v01: bool = False,
        n_replicas: Optional[int] = None,
        batch_tuples: Optional[Iterable[Tuple[int, int, int]]] = None,
    ) -> None:
        if not isinstance(num_samples, (int, np.integer)):
            num_samples = len(num_samples)
        num_samples = int(num_samples)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.num_samples = num_samples
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.v01 = bool(v01)
        self.base_size = _hw(base_size, "base_size")
        self.base_batch_size = int(base_batch_size)
        self.epoch = 0
        if batch_tuples is not None:
            tuples = sorted({(int(h), int(w), int(b)) for h, w, b in batch_tuples})
            if not tuples or any(h <= 0 or w <= 0 or b <= 0 for h, w, b in tuples):
                raise ValueError(f"batch_tuples must be non-empty positive (h, w, batch) triples, got {tuples}")
        else:
            tuples = image_batch_tuples(
                self.base_size, self.base_batch_size, min_size, max_size, n_scales, divisor,
                v01=self.v01, n_replicas=self.world_size if n_replicas is None else int(n_replicas),
            )
        self.batch_tuples: Tuple[Tuple[int, int, int], ...] = tuple(tuples)
        self.samples_per_replica = math.ceil(num_samples / self.world_size)
        self._plan_cache: Optional[Tuple[int, List[int], List[Tuple[int, int, int]]]] = None

    @property
    def scales(self) -> List[Tuple[int, int]]:
        """The (h, w) resolutions this sampler draws from."""
        return [(h, w) for h, w, _ in self.batch_tuples]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle/scale sequence ``__iter__`` and ``__len__`` describe."""
        self.epoch = int(epoch)

    def _plan(self) -> Tuple[List[int], List[Tuple[int, int, int]]]:
        """This rank's index list and the per-step (h, w, batch) choices for the current epoch."""
        if self._plan_cache is not None and self._plan_cache[0] == self.epoch:
            return self._plan_cache[1], self._plan_cache[2]
        total = self.samples_per_replica * self.world_size
        indices = list(range(self.num_samples))
        indices += indices[: total - self.num_samples]  # pad by repeating the head (before shuffling)
        rng = random.Random(self.seed + self.epoch)
        if self.shuffle:
            rng.shuffle(indices)
        mine = indices[self.rank::self.world_size]
        steps = []
        start = 0
        while start < len(mine):
            choice = rng.choice(self.batch_tuples)
            steps.append(choice)
            start += choice[2]
        self._plan_cache = (self.epoch, mine, steps)
        return mine, steps

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        mine, steps = self._plan()
        n = len(mine)
        start = 0
        for h, w, batch in steps:
            ids = [mine[(start + k) % n] for k in range(batch)]
            start += batch
            yield [(h, w, i) for i in ids]

    def __len__(self) -> int:
        """Number of batches this rank yields in the current epoch (exact: the draw is replayed)."""
        return len(self._plan()[1])

    def __repr__(self) -> str:
        return (f"VariableBatchSampler(num_samples={self.num_samples}, batch_tuples={list(self.batch_tuples)}, "
                f"rank={self.rank}, world_size={self.world_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"epoch={self.epoch}, v01={self.v01})")
