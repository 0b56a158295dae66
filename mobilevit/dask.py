"""Batch prediction on a Dask cluster: ``mobilevit.dask.predict``.

    >>> from distributed import Client, LocalCluster
    >>> import mobilevit.dask
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    >>> df = mobilevit.dask.predict(["a.jpg", "b.png", ...], weights="/shared/mobilevit_s")
    >>> df.to_parquet("predictions/")          # or df.compute()

Dask is imported only inside the functions of this module: ``import mobilevit``
never imports it.  The worker-side helpers (model cache, result columns) are
in :mod:`mobilevit.cluster`, shared with :mod:`mobilevit.ray`; the columns are
the fields of a :class:`mobilevit.Predictor` row (one schema everywhere).

How it runs
-----------
* The inputs are cut into partitions (``partition_size`` items each for a list;
  a ``dask.bag`` or a dask DataFrame column keeps its own partitions) and each
  partition becomes one task that runs a :class:`mobilevit.Predictor` over it.
* The model travels either as a **weights path** (``weights=``, a file or folder
  that :func:`mobilevit.from_pretrained` reads; it must be readable by every
  worker) or as the model's **small pickle** (``model=``: configuration, class
  names, preprocessing and float32 weights, no C state).  The pickle is one
  node of the task graph, so each worker receives it once, not once per task.
* Each worker process builds the model **once** and keeps it in a module-level
  cache keyed by the weights path or the SHA-256 of the pickle; later tasks on
  that worker reuse it.  :func:`worker_info` reports what a process has built.
* **Threads.** A worker's thread budget is ``threads_per_worker`` if given,
  else the worker's ``nthreads``.  The process calls
  :func:`mobilevit.set_num_threads` with it, and the network runs one batch at a
  time per worker process with that many OpenMP threads (concurrent Dask tasks
  in the same process decode images in parallel but take turns on the
  network), so threads x OpenMP threads never exceed the budget.  Outside a
  ``distributed`` worker (the local threaded scheduler) the package default is
  kept unless ``threads_per_worker`` is given.
* **Exactly once.** Each partition yields one row per input, in input order; a
  file that is missing or cannot be decoded gives a row with ``error`` set and
  empty predictions, never a failed task.  A task lost with its worker is
  recomputed by Dask, so no input is lost or duplicated.

Output columns (Arrow-backed pandas dtypes, written natively by ``to_parquet``)
------------------------------------------------------------------------------
=============  ==================================  ===========================================
column         dtype                               content
=============  ==================================  ===========================================
``path``       ``string[pyarrow]``                 the input path (null for raw-bytes inputs; bytes
                                                   that are not UTF-8 written as ``\\xNN``)
``labels``     ``list<string>[pyarrow]``           top-k class names, best first ([] on error)
``scores``     ``list<double>[pyarrow]``           their softmax probabilities ([] on error)
``class_ids``  ``list<int64>[pyarrow]``            their class indices ([] on error)
``error``      ``string[pyarrow]``                 null, or ``"ExceptionType: message"``
=============  ==================================  ===========================================

The lists are real Arrow ``list`` columns (not JSON strings): Parquet stores
them as LIST and pandas/pyarrow/Spark read them back as lists.  For a list of
paths the index is the input position (0..n-1, known divisions); for a dask
DataFrame/Series the input's index is kept; for a bag each partition's index
starts at 0.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Optional

from .cluster import (OUTPUT_COLUMNS, ModelSource, columns_to_arrow, count_rows, empty_frame,  # noqa: F401
                      get_predictor, rows_to_columns, to_pandas, worker_info)

__all__ = ["predict", "ModelSource", "predict_partition", "worker_info", "OUTPUT_COLUMNS"]


def _distributed_worker_threads() -> Optional[int]:
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        w = get_worker()
    except ValueError:  # not running inside a distributed worker
        return None
    st = getattr(w, "state", None)
    n = getattr(st, "nthreads", None) or getattr(w, "nthreads", None)
    return int(n) if n else None


def predict_partition(items, source: ModelSource, options: Dict[str, Any],
                      threads_per_worker: Optional[int] = None, index=None):
    """Predict one partition (any iterable of paths / encoded bytes / pandas
    Series) and return a pandas DataFrame with :data:`OUTPUT_COLUMNS`."""
    import pandas as pd
    if isinstance(items, pd.Series):
        index = items.index if index is None else index
        items = items.tolist()
    else:
        items = list(items)
    n = threads_per_worker or _distributed_worker_threads()
    pred = get_predictor(source, options, n)
    rows = list(pred.predict(items))
    df = to_pandas(rows_to_columns(items, rows), index)
    count_rows(len(items))
    return df


def _predict_positions(items, start: int, source, options, threads_per_worker):
    import pandas as pd
    items = list(items)
    return predict_partition(items, source, options, threads_per_worker,
                             index=pd.RangeIndex(start, start + len(items)))


# ---------------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------------
def predict(paths_or_bag, weights=None, model=None, top_k: int = 5, batch_size: int = 16, preset=None,
            multi_scale: bool = False, threads_per_worker: Optional[int] = None, partition_size: int = 64,
            column: str = "path", model_name: Optional[str] = None, decode_threads: Optional[int] = None):
    """Lazy top-k classification of many images on Dask; returns a
    ``dask.dataframe.DataFrame`` with columns ``path, labels, scores,
    class_ids, error`` (see the module docstring for dtypes).

    ``paths_or_bag``: a list/tuple of paths (or encoded image ``bytes``), a
    ``dask.bag.Bag`` of them, a dask DataFrame (its ``column`` is used) or a
    dask / pandas Series.

    ``weights``: a checkpoint file or folder readable on every worker;
    ``model``: an in-memory :class:`mobilevit.MobileViT` (sent as its small
    pickle, once per worker); neither: the bundled default model.

    ``top_k``, ``batch_size``, ``preset``, ``multi_scale``: as for
    :class:`mobilevit.Predictor`.  ``threads_per_worker``: OpenMP threads per
    worker process (default: the worker's ``nthreads``).  ``partition_size``:
    items per task for list input.  ``decode_threads``: image-decoding threads
    per task (default: the thread budget).

    Nothing runs until ``.compute()`` / ``.to_parquet()`` / ``.persist()``; it
    runs on the current ``distributed.Client`` if there is one.
    """
    import dask
    import dask.dataframe as dd
    import pandas as pd

    from .predictor import check_num_threads
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1, got {partition_size}")
    threads_per_worker = check_num_threads(threads_per_worker, "threads_per_worker")
    options = {"top_k": int(top_k), "batch_size": int(batch_size), "preset": preset,
               "multi_scale": bool(multi_scale)}
    if decode_threads:
        options["num_workers"] = int(decode_threads)
    try:
        hash(tuple(sorted(options.items())))
    except TypeError:
        raise TypeError("preset must be None, a preset name or a mobilevit.preprocess.Preprocess") from None
    # one graph node for the model: each worker fetches it once, tasks share it
    src = ModelSource(weights=weights, model=model, model_name=model_name)
    src_node = dask.delayed(src, name="mobilevit-model-" + hashlib.sha1(src.key.encode()).hexdigest())

    obj = paths_or_bag
    try:
        import dask.bag as db
    except ImportError:  # dask without the bag extras
        db = None

    if isinstance(obj, dd.DataFrame):
        obj = obj[column]
    if isinstance(obj, dd.Series):
        return obj.map_partitions(predict_partition, src_node, options, threads_per_worker,
                                  meta=empty_frame(obj.index.dtype), enforce_metadata=False)
    if db is not None and isinstance(obj, db.Bag):
        parts = [dask.delayed(predict_partition, pure=True)(p, src_node, options, threads_per_worker)
                 for p in obj.to_delayed()]
        return dd.from_delayed(parts, meta=empty_frame(), verify_meta=False)
    if isinstance(obj, pd.DataFrame):
        obj = obj[column]
    if isinstance(obj, pd.Series):
        obj = obj.tolist()
    if isinstance(obj, (str, bytes, os.PathLike)):
        raise TypeError("predict() takes a collection of inputs; wrap a single path in a list")
    items = list(obj)
    if not items:
        return dd.from_pandas(empty_frame(), npartitions=1)
    parts, divisions = [], []
    for start in range(0, len(items), partition_size):
        chunk = items[start:start + partition_size]
        parts.append(dask.delayed(_predict_positions, pure=True)(chunk, start, src_node, options,
                                                                 threads_per_worker))
        divisions.append(start)
    divisions.append(len(items) - 1)
    return dd.from_delayed(parts, meta=empty_frame(), divisions=tuple(divisions), verify_meta=False)
