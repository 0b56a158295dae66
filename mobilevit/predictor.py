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

from .labels import imagenet_labels, model_class_names  # noqa: F401  (imagenet_labels re-exported)


def class_names_for(model) -> List[str]:
    """The model's class names (:func:`mobilevit.labels.model_class_names`: ``model.class_names``
    if set, the ImageNet-1k names — assumed — for a 1000-class model, else ``class_0`` ...)."""
    return model_class_names(model)[0]


def preset_for(model) -> Preprocess:
    """The preprocessing the checkpoint was made with: an HF folder's
    preprocessor_config.json, a bundled model's own settings, or the preset of
    the checkpoint's ecosystem (hf / timm / cvnets)."""
    pc = getattr(model, "pretrained_cfg", None) or {}
    if pc.get("preprocess"):     # resolved by from_pretrained (argument, checkpoint files or origin)
        p = dict(pc["preprocess"])
        return Preprocess(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in p.items()})
    if pc.get("preprocessor_config"):
        return Preprocess.from_hf_config(pc["preprocessor_config"])
    if pc.get("pretrained_cfg"):
        try:
            return Preprocess.from_timm_cfg(pc["pretrained_cfg"])
        except Exception:
            pass
    if pc.get("origin"):
        from .preprocess import preset_for_origin
        return preset_for_origin(pc["origin"])
    scheme = pc.get("scheme")
    return Preprocess.from_name({"timm": "timm", "cvnets": "cvnets"}.get(scheme, "hf"))


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


def _name(item) -> Optional[str]:
    if isinstance(item, (str, os.PathLike)):
        return display_name(os.fspath(item))
    return None


#: version of the output row schema shared by :class:`Predictor`, the CLI (JSONL metadata line),
#: :mod:`mobilevit.dask` and :mod:`mobilevit.ray`.  1: ``input`` + ``predictions`` list of dicts
#: (CLI / Predictor before 0.2); 2: the flat fields of :data:`ROW_FIELDS`.
SCHEMA_VERSION = 2

#: the fields of every output row, in order: ``path`` (str, or None for in-memory inputs),
#: ``labels`` (top-k class names, best first), ``scores`` (their softmax probabilities),
#: ``class_ids`` (their class indices) and ``error`` (None, or ``"Type: message"``; the three
#: lists are empty then)
ROW_FIELDS = ("path", "labels", "scores", "class_ids", "error")


def _is_single(inputs) -> bool:
    """One input rather than a collection of them: a path, encoded bytes, a PIL image, or an
    array of at most 3 dimensions (HWC / CHW / HW)."""
    if isinstance(inputs, (str, bytes, bytearray, os.PathLike)):
        return True
    if isinstance(inputs, np.ndarray):
        return inputs.ndim <= 3
    return hasattr(inputs, "getbands") and hasattr(inputs, "size")   # a PIL image (no import needed)


class Prediction(dict):
    """One output row: a dict with ``index`` and the fields of :data:`ROW_FIELDS`
    (``path``, ``labels``, ``scores``, ``class_ids``, ``error``); JSON-serialisable as is.

    Rows made by :func:`mobilevit.predict` / ``model.predict`` also keep the decoded image
    (attribute ``image``, not a key) and display in a notebook as the image beside a bar chart of
    its top-k (``_repr_png_`` / ``_repr_html_``, drawn with Pillow)."""

    image = None
    #: True when ``labels`` are ImageNet-1k names assumed for a checkpoint that carries no class
    #: names (an attribute, not a key: the row schema is unchanged); see :attr:`Predictor.label_source`
    labels_assumed = False

    @property
    def label(self) -> Optional[str]:
        """The top-1 class name (None for an error row)."""
        return self["labels"][0] if self["labels"] else None

    def _repr_png_(self):
        from .notebook import prediction_png
        return prediction_png(self)

    def _repr_html_(self):
        from .notebook import prediction_html
        return prediction_html(self)


def softmax_topk(logits: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """(class indices, probabilities) of the ``k`` best classes of each row of ``logits``
    [B, C], best first (ties: lower index first), softmax in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    k = min(k, p.shape[1])
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(p, idx, axis=1)


class Predictor:
    """``Predictor(model, preset=None, batch_size=16, top_k=5, multi_scale=False)``

    ``predict(inputs)`` takes paths, PIL images or HWC arrays (or one of them)
    and yields one :class:`Prediction` row per input, in input order (schema
    :data:`SCHEMA_VERSION`, the same fields as the CLI and the Dask/Ray columns)::

        {"index": 0, "path": "cat.jpg", "labels": ["tabby", ...], "scores": [0.81, ...],
         "class_ids": [281, ...], "error": None}

    ``preset``: a :class:`~mobilevit.preprocess.Preprocess`, a preset name
    ("hf", "timm", "cvnets", ...) or None for the checkpoint's own.
    ``num_threads``: OpenMP threads for each network call, an int in 1..1024
    (None: the package default, see :func:`mobilevit.set_num_threads`).

    Nothing is lost per input: a member that cannot be loaded, preprocessed or
    run gives its own error row; when a batched network call fails, its
    members are run one by one so only the culprits get error rows; non-finite
    logits give the error ``"non-finite logits"``, never a prediction.
    ``path`` is the path as given (names that are not valid UTF-8 escaped as
    ``\\xNN``, see :func:`display_name`) or None for in-memory inputs (their
    ``index`` says which); ``bytes`` are encoded image data, so pass bytes *paths* as
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
        if class_names:
            self.class_names, self.labels_assumed = list(class_names), False
        else:
            self.class_names, self.labels_assumed = model_class_names(model)
        #: where the names in ``labels`` come from: "given" (class_names=), "checkpoint",
        #: "assumed: ImageNet-1k" (a 1000-class checkpoint without names) or "placeholders"
        self.label_source = ("given" if class_names else "assumed: ImageNet-1k" if self.labels_assumed
                             else "checkpoint" if getattr(model, "class_names", None) else "placeholders")
        self.num_threads = check_num_threads(num_threads)
        self._presets: Dict[Tuple[int, int], Preprocess] = {}

    # ---- per-image work (worker threads) ----------------------------------------
    def _preset_for_scale(self, scale):
        if scale not in self._presets:
            self._presets[scale] = self.preset.resized(*scale)
        return self._presets[scale]

    def _prepare(self, idx: int, item, name: Optional[str]
                 ) -> Tuple[int, Optional[str], Any, Optional[str], Optional[Tuple[int, int]]]:
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
            msg = f"{type(e).__name__}: {e}"
            if name is not None and isinstance(item, (bytes, bytearray)):
                msg = msg.replace(f"<{len(item)} bytes>", repr(name))   # the decoder saw bytes; name the file
            return idx, name, None, msg, None

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
            ids = [int(c) for c in idx[k]]
            rows.append(self._row(i, n, ids, [float(s) for s in p[k]]))
            k += 1
        return rows

    def _row(self, idx, name, class_ids=(), scores=(), error=None) -> Prediction:
        names = self.class_names
        # messages can quote a raw (surrogate-escaped) file name; keep every row UTF-8 encodable
        row = Prediction(index=idx, path=name,
                         labels=[names[c] if c < len(names) else str(c) for c in class_ids],
                         scores=list(scores), class_ids=list(class_ids),
                         error=display_name(error) if error is not None else None)
        if self.labels_assumed:
            row.labels_assumed = True
        return row

    def predict(self, inputs, progress: bool = False, total: Optional[int] = None,
                names: Optional[Iterable[Optional[str]]] = None) -> Iterator[Prediction]:
        """Yield one :class:`Prediction` row per input, in input order (streaming).

        ``inputs``: an iterable of paths, encoded image bytes, PIL images, uint8/float HWC
        arrays or preprocessed float CHW arrays, or one such input (a single path, bytes, image
        or array of at most 3 dimensions is one input, not a sequence).  ``names``: optional
        row names parallel to ``inputs`` (the ``path`` field; default: the input's own path,
        None for in-memory inputs); error messages about bytes inputs name them too.
        ``progress``: a tqdm bar (``total`` its length when ``inputs`` has none)."""
        if _is_single(inputs):
            inputs = [inputs]
        name_it = iter(names) if names is not None else None
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
                    if name_it is None:
                        name = _name(item)
                    else:
                        try:
                            name = next(name_it)
                        except StopIteration:
                            raise ValueError(f"names= has fewer entries than inputs ({idx})") from None
                        name = None if name is None else display_name(os.fspath(name))
                    in_flight.append(pool.submit(self._prepare, idx, item, name))
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

    def __call__(self, inputs) -> List[Prediction]:
        """``list(self.predict(inputs))``."""
        return list(self.predict(inputs))


# ---------------------------------------------------------------------------------------------
# The front door: mobilevit.predict / MobileViT.predict
# ---------------------------------------------------------------------------------------------
class Segmentation:
    """A segmentation result of :func:`mobilevit.predict` with a DeepLabv3 model.

    ``mask``: int64 label mask [H, W] at the image's resolution (None on error);
    ``image``: the decoded PIL image; ``path``: the input's path or None;
    ``class_names``: names of the mask's labels; ``error``: None or ``"Type: message"``.
    In a notebook it displays as the mask over the image with a legend of the classes
    present (``_repr_png_`` / ``_repr_html_``)."""

    def __init__(self, mask, image, path, class_names, error=None):
        self.mask, self.image, self.path, self.class_names, self.error = mask, image, path, class_names, error

    def areas(self) -> Dict[str, float]:
        """Fraction of the pixels of each class present, largest first."""
        if self.mask is None:
            return {}
        counts = np.bincount(self.mask.ravel())
        total = float(self.mask.size)
        out = {(self.class_names[c] if c < len(self.class_names) else str(c)): counts[c] / total
               for c in np.argsort(-counts, kind="stable") if counts[c]}
        return out

    def __repr__(self):
        if self.error:
            return f"Segmentation(path={self.path!r}, error={self.error!r})"
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(self.areas().items())[:3])
        return f"Segmentation(path={self.path!r}, mask={self.mask.shape[0]}x{self.mask.shape[1]}, {top})"

    def _repr_png_(self):
        from .notebook import segmentation_png
        return segmentation_png(self)

    def _repr_html_(self):
        from .notebook import segmentation_html
        return segmentation_html(self)


_LOADED: Dict[str, Any] = {}


def _resolve_model(model):
    if model is None:
        if "default" not in _LOADED:
            from .default import load_default_model
            _LOADED["default"] = load_default_model()
        return _LOADED["default"]
    if isinstance(model, (str, os.PathLike)):
        key = os.path.abspath(os.fspath(model))
        if key not in _LOADED:
            from .hub import from_pretrained
            _LOADED[key] = from_pretrained(key)
        return _LOADED[key]
    if not callable(getattr(model, "forward", None)):
        raise TypeError(f"model= must be a mobilevit.MobileViT, a checkpoint path or None (the bundled "
                        f"default model), got {type(model).__name__}")
    return model


def _is_preprocessed(item) -> bool:
    return isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[0] == 3 and item.dtype.kind == "f"


def predict(inputs, model=None, top_k: int = 5, preset: Union[None, str, Preprocess] = None,
            num_threads: Optional[int] = None, batch_size: int = 16):
    """Classify (or segment) one image or a list of them, with the checkpoint's preprocessing.

    ``inputs``: a path, encoded bytes, a PIL image or a uint8 HWC array (float HWC in [0, 1]
    and preprocessed float CHW arrays work too), or a list of them.
    ``model``: a :class:`mobilevit.MobileViT`, a checkpoint file or folder (anything
    :func:`mobilevit.from_pretrained` reads; loaded once and cached), or None for the bundled
    default digits model.  ``top_k``, ``preset``, ``num_threads``, ``batch_size``: as for
    :class:`Predictor`.

    Returns a :class:`Prediction` for one input, a list of them for a list (in order; an input
    that cannot be read gives a row with ``error`` set, it does not raise).  With a DeepLabv3
    model the results are :class:`Segmentation` objects instead.  In a notebook both display
    as pictures.  For folders of many images use :class:`Predictor` (it streams; this keeps the
    decoded images for display)."""
    from .imageio import load_image
    m = _resolve_model(model)
    single = _is_single(inputs)
    items = [inputs] if single else list(inputs)
    names = [_name(it) for it in items]
    images = []
    for it in items:
        if _is_preprocessed(it):
            images.append(it)
            continue
        try:
            images.append(load_image(it))
        except Exception:  # the Predictor gives this input its error row (same message)
            images.append(it)
    if getattr(m, "cfg", None) is not None and m.cfg.head == "deeplabv3":
        class_names = class_names_for(m)
        out = []
        for name, img in zip(names, images):
            try:
                mask = m.segment(img, preset=preset, num_threads=num_threads)
                out.append(Segmentation(mask, img, name, class_names))
            except Exception as e:
                out.append(Segmentation(None, img if hasattr(img, "getbands") else None, name, class_names,
                                        display_name(f"{type(e).__name__}: {e}")))
        return out[0] if single else out
    pred = Predictor(m, preset=preset, batch_size=batch_size, top_k=top_k, num_threads=num_threads)
    rows = list(pred.predict(images, names=names))
    for row, img in zip(rows, images):
        if hasattr(img, "getbands"):
            row.image = img
    return rows[0] if single else rows


def input_hint(x) -> str:
    """A sentence for a model input that is not a float NCHW batch: what it looks like and
    what to call instead (``model.predict`` / :func:`mobilevit.predict`), or "" if nothing
    better can be said."""
    if isinstance(x, (str, os.PathLike)):
        return f" (got a path, {display_name(os.fspath(x))!r}: use model.predict(path) for images)"
    if isinstance(x, (bytes, bytearray)):
        return " (got encoded image bytes: use model.predict(data))"
    if hasattr(x, "getbands") and hasattr(x, "size"):
        return f" (got a PIL image, {x.size[0]}x{x.size[1]} {x.mode}: use model.predict(image))"
    a = np.asarray(x) if isinstance(x, np.ndarray) else None
    if a is not None and a.dtype == np.uint8 and a.ndim in (2, 3):
        return (f" (got a uint8 array of shape {a.shape}, an image: use model.predict(array), or "
                f"mobilevit.preprocess to make a float NCHW batch)")
    return ""


__all__ = ["predict", "Prediction", "Segmentation", "SCHEMA_VERSION", "ROW_FIELDS", "input_hint", "Predictor", "imagenet_labels", "class_names_for", "preset_for", "softmax_topk", "check_num_threads",
           "display_name", "MAX_THREADS"]
