"""Batch prediction: decode + preprocess on worker threads while the C core
(GIL released) runs the network; results come back in input order, one row
per input, a prediction or an error — a bad file never stops the run.

With ``multi_scale=True`` images are put into resolution buckets (the scale
of the paper's set S nearest to each image's own size and aspect, see
:func:`mobilevit.sampler.nearest_scale`) and each bucket's batch size
follows the multi-scale sampler's rule (batch x base area / (h x w)), so the
pixels per batch, and memory, stay bounded.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .imageio import load_image
from .preprocess import Preprocess
from .sampler import batch_size_for, multi_scale_sizes, nearest_scale

_IMAGENET_FILE = os.path.join(os.path.dirname(__file__), "data", "imagenet1k_labels.txt")


def imagenet_labels() -> List[str]:
    """The 1000 ImageNet-1k class names in the usual index order (sorted
    WordNet ids), as HF's id2label and timm's ImageNetInfo give them."""
    with open(_IMAGENET_FILE, "r", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    return [r[1] if len(r) > 1 else r[0] for r in rows]


def class_names_for(model) -> List[str]:
    names = getattr(model, "class_names", None)
    if names:
        return list(names)
    n = model.num_classes
    if n == 1000 and os.path.exists(_IMAGENET_FILE):
        return imagenet_labels()
    return [f"class_{i}" for i in range(n)]


def preset_for(model) -> Preprocess:
    """The preprocessing the checkpoint was made with: an HF folder's
    preprocessor_config.json, a bundled model's own settings, or the preset of
    the checkpoint's ecosystem (hf / timm / cvnets)."""
    pc = getattr(model, "pretrained_cfg", None) or {}
    if pc.get("preprocessor_config"):
        return Preprocess.from_hf_config(pc["preprocessor_config"])
    if pc.get("preprocess"):
        p = dict(pc["preprocess"])
        return Preprocess(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in p.items()})
    if pc.get("pretrained_cfg"):
        try:
            return Preprocess.from_timm_cfg(pc["pretrained_cfg"])
        except Exception:
            pass
    scheme = pc.get("scheme")
    return Preprocess.from_name({"timm": "timm", "cvnets": "cvnets"}.get(scheme, "hf"))


# The thread rule of mobilevit.set_num_threads (csrc/module.c, py_set_num_threads): an int in 1..1024.
from .threads import MAX_THREADS, check_num_threads  # noqa: E402,F401  (the one thread-count rule, re-exported)


def display_name(name) -> str:
    """A file name as text that always encodes to UTF-8, for output rows.

    Names that are not valid UTF-8 reach Python as ``bytes`` (``os.listdir(b".")``) or as
    ``str`` holding surrogate escapes (``os.listdir(".")``, ``sys.argv``); each undecodable
    byte is written as ``\\xNN`` (surrogateescape -> backslashreplace): ``b"caf\\xe9.png"``
    becomes ``caf\\xe9.png``.  Valid names are returned unchanged.  The same convention is
    used in JSONL, CSV, stdout and the Dask/Ray ``path`` column, and by ``--resume``."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte (U+D800..U+DC7F, ...)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _name(item, idx: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return display_name(os.fspath(item))
    return f"<{type(item).__name__} #{idx}>"


def softmax_topk(logits: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    k = min(k, p.shape[1])
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(p, idx, axis=1)


class Predictor:
    """``Predictor(model, preset=None, batch_size=16, top_k=5, multi_scale=False)``

    ``predict(inputs)`` takes paths, PIL images or HWC arrays and yields one
    dict per input, in input order::

        {"index": 0, "input": "cat.jpg", "predictions": [{"label", "score", "class_id"}, ...],
         "error": None}

    ``preset``: a :class:`~mobilevit.preprocess.Preprocess`, a preset name
    ("hf", "timm", "cvnets", ...) or None for the checkpoint's own.
    ``num_threads``: OpenMP threads for each network call, an int in 1..1024
    (None: the package default, see :func:`mobilevit.set_num_threads`).

    Nothing is lost per input: a member that cannot be loaded, preprocessed or
    run gives its own error row; when a batched network call fails, its
    members are run one by one so only the culprits get error rows; non-finite
    logits give the error ``"non-finite logits"``, never a prediction.
    ``input`` is the path as given (names that are not valid UTF-8 escaped as
    ``\\xNN``, see :func:`display_name`) or ``<type #index>`` for in-memory
    inputs; ``bytes`` are encoded image data, so pass bytes *paths* as
    ``os.fsdecode(p)``.
    """

    def __init__(self, model, preset: Union[None, str, Preprocess] = None, batch_size: int = 16,
                 top_k: int = 5, multi_scale: bool = False, scales: Optional[Sequence] = None,
                 num_workers: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.model = model
        if preset is None:
            preset = preset_for(model)
        elif isinstance(preset, str):
            preset = Preprocess.from_name(preset)
        self.preset: Preprocess = preset
        self.batch_size = int(batch_size)
        self.top_k = int(top_k)
        self.multi_scale = bool(multi_scale)
        base = self.preset.output_size or (256, 256)
        self.base_size = tuple(base)
        if scales is None:
            scales = multi_scale_sizes(base_size=self.base_size,
                                       min_size=tuple(max(32, round(s * 160 / 256)) for s in self.base_size),
                                       max_size=tuple(round(s * 320 / 256) for s in self.base_size))
        self.scales = [tuple(s) if not isinstance(s, int) else (s, s) for s in scales]
        self.num_workers = num_workers or min(4, os.cpu_count() or 1)
        self.class_names = list(class_names) if class_names else class_names_for(model)
        self.num_threads = check_num_threads(num_threads)
        self._presets: Dict[Tuple[int, int], Preprocess] = {}

    # ---- per-image work (worker threads) ----------------------------------------
    def _preset_for_scale(self, scale):
        if scale not in self._presets:
            self._presets[scale] = self.preset.resized(*scale)
        return self._presets[scale]

    def _prepare(self, idx: int, item) -> Tuple[int, str, Any, Optional[str], Optional[Tuple[int, int]]]:
        name = _name(item, idx)
        try:
            if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[0] == 3 and item.dtype.kind == "f" \
                    and not self.multi_scale:
                arr = np.ascontiguousarray(item, np.float32)      # already preprocessed CHW
                return idx, name, arr, None, tuple(arr.shape[1:])
            img = load_image(item)
            preset = self.preset
            if self.multi_scale:
                preset = self._preset_for_scale(nearest_scale(img.height, img.width, self.scales))
            preset.check_memory(img.height, img.width, name)   # refuse before allocating; names the input
            arr = preset(img)
            return idx, name, arr, None, tuple(arr.shape[1:])
        except Exception as e:  # every failure becomes that input's error row
            return idx, name, None, f"{type(e).__name__}: {e}", None

    # ---- batching (caller's thread) ----------------------------------------------
    def _bucket_batch(self, size: Tuple[int, int]) -> int:
        if not self.multi_scale:
            return self.batch_size
        return batch_size_for(size[0], size[1], base_size=self.base_size, base_batch_size=self.batch_size)

    def _run_batch(self, items) -> List[dict]:
        try:
            logits = np.asarray(self.model(np.stack([a for _, _, a in items]), num_threads=self.num_threads))
            if logits.ndim != 2 or logits.shape[0] != len(items):
                raise RuntimeError(f"the model returned logits of shape {logits.shape} for a batch of "
                                   f"{len(items)}; expected ({len(items)}, num_classes)")
        except Exception as e:
            if len(items) > 1:  # isolate: only the members that fail on their own get error rows
                return [row for item in items for row in self._run_batch([item])]
            i, n, _ = items[0]
            return [self._row(i, n, error=f"{type(e).__name__}: {e}")]
        finite = np.isfinite(logits).all(axis=1)
        rows = []
        if finite.any():
            idx, p = softmax_topk(logits[finite], self.top_k)
        k = 0
        for r, (i, n, _) in enumerate(items):
            if not finite[r]:
                rows.append(self._row(i, n, error="non-finite logits"))
                continue
            preds = [{"label": self.class_names[c] if c < len(self.class_names) else str(c),
                      "score": float(s), "class_id": int(c)} for c, s in zip(idx[k], p[k])]
            k += 1
            rows.append(self._row(i, n, preds))
        return rows

    @staticmethod
    def _row(idx, name, preds=None, error=None) -> dict:
        # messages can quote a raw (surrogate-escaped) file name; keep every row UTF-8 encodable
        return {"index": idx, "input": name, "predictions": preds or [],
                "error": display_name(error) if error is not None else None}

    def predict(self, inputs: Iterable, progress: bool = False, total: Optional[int] = None) -> Iterator[dict]:
        """Yield one result dict per input, in input order (streaming)."""
        bar = None
        if progress:
            try:
                from tqdm.auto import tqdm
                bar = tqdm(total=total if total is not None else (len(inputs) if hasattr(inputs, "__len__") else None),
                           unit="img", dynamic_ncols=True)
            except Exception:
                bar = None
        window = max(2 * self.batch_size, 4 * self.num_workers)
        if self.multi_scale:
            window = max(window, 2 * max(self._bucket_batch(s) for s in self.scales))
        done: Dict[int, dict] = {}
        next_out = 0
        buckets: Dict[Tuple[int, int], list] = collections.OrderedDict()
        in_flight: collections.deque = collections.deque()
        it = iter(enumerate(inputs))
        exhausted = False

        def emit():
            nonlocal next_out
            while next_out in done:
                row = done.pop(next_out)
                next_out += 1
                if bar is not None:
                    bar.update(1)
                yield row

        def flush(size):
            for row in self._run_batch(buckets.pop(size)):
                done[row["index"]] = row

        pool = cf.ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="mobilevit-decode")
        try:
            while True:
                while not exhausted and len(in_flight) < window:
                    try:
                        idx, item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    in_flight.append(pool.submit(self._prepare, idx, item))
                if not in_flight:
                    break
                idx, name, arr, err, size = in_flight.popleft().result()
                if err is not None:
                    done[idx] = self._row(idx, name, error=err)
                else:
                    b = buckets.setdefault(size, [])
                    b.append((idx, name, arr))
                    if len(b) >= self._bucket_batch(size):
                        flush(size)
                # bounded memory: if results wait behind a bucket that is slow to fill, run it now
                while buckets and (len(done) + sum(len(v) for v in buckets.values())) > 4 * window:
                    oldest = min(buckets, key=lambda s: buckets[s][0][0])
                    flush(oldest)
                yield from emit()
            for size in list(buckets):
                flush(size)
            yield from emit()
        finally:
            # on KeyboardInterrupt / SIGTERM or a consumer that stops early, queued decodes are
            # dropped instead of waited for
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()

    def __call__(self, inputs: Iterable) -> List[dict]:
        return list(self.predict(inputs))


__all__ = ["Predictor", "imagenet_labels", "class_names_for", "preset_for", "softmax_topk", "check_num_threads",
           "display_name", "MAX_THREADS"]
