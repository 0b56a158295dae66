"""What the Dask and Ray adapters share: the model as it travels to the
workers (:class:`ModelSource`), the per-process model and predictor cache
(:func:`get_predictor`, :func:`worker_info`), and the output columns
(:data:`OUTPUT_COLUMNS`, :func:`rows_to_columns`, :func:`columns_to_arrow`).

Neither dask, ray, pandas nor pyarrow is imported at module level: pyarrow and
pandas are imported inside the functions that build tables.  :mod:`mobilevit.dask`
and :mod:`mobilevit.ray` both import from here; this module imports neither.

The columns are the rows of :class:`mobilevit.Predictor` (schema
:data:`mobilevit.predictor.SCHEMA_VERSION`): ``path``, ``labels``, ``scores``,
``class_ids``, ``error``.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
from typing import Any, Dict, List, Optional, Sequence

from .predictor import ROW_FIELDS, display_name
from .threads import check_num_threads

__all__ = ["ModelSource", "get_predictor", "worker_info", "OUTPUT_COLUMNS", "arrow_schema", "rows_to_columns",
           "columns_to_arrow", "to_pandas", "empty_frame", "path_of"]

#: the output columns of :func:`mobilevit.dask.predict` and :class:`mobilevit.ray.MobileViTPredictor`:
#: the fields of a :class:`mobilevit.Predictor` row, without its ``index``
OUTPUT_COLUMNS = ROW_FIELDS


# ---------------------------------------------------------------------------------------------
# The model as it travels: a weights path or the model's pickle (small: config + weights)
# ---------------------------------------------------------------------------------------------
class ModelSource:
    """What a worker needs to build the model, and the key it is cached under.

    ``ModelSource(weights="/shared/ckpt")`` (any source :func:`mobilevit.from_pretrained`
    reads, as a path every worker can open), ``ModelSource(model=model)`` (the
    model's own pickle, hashed once here), or ``ModelSource()`` for the bundled
    default model."""

    def __init__(self, weights=None, model=None, model_name: Optional[str] = None):
        if weights is not None and model is not None:
            raise ValueError("pass either weights= (a path) or model= (a MobileViT), not both")
        self.weights: Optional[str] = None
        self.blob: Optional[bytes] = None
        self.model_name = model_name
        if model is not None:
            self.blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
            self.key = "pickle:" + hashlib.sha256(self.blob).hexdigest()
        elif weights is not None:
            if not isinstance(weights, (str, os.PathLike)):
                raise TypeError("weights= must be a path (str / os.PathLike) readable by every worker; "
                                "pass an in-memory model as model=")
            self.weights = os.path.abspath(os.fspath(weights))
            self.key = f"path:{self.weights}:{model_name or ''}"
        else:
            self.key = "default"

    def load(self):
        """Build the model (on the worker)."""
        if self.blob is not None:
            return pickle.loads(self.blob)
        if self.weights is not None:
            from .hub import from_pretrained
            return from_pretrained(self.weights, model_name=self.model_name)
        from .default import load_default_model
        return load_default_model()

    def __repr__(self):
        return f"ModelSource({self.key[:24]}{'...' if len(self.key) > 24 else ''})"


# ---------------------------------------------------------------------------------------------
# Worker-side state: one model per process, one network call at a time per process
# ---------------------------------------------------------------------------------------------
_BUILD_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()
_MODELS: Dict[str, Any] = {}
_PREDICTORS: Dict[tuple, Any] = {}
_STATE = {"model_builds": 0, "num_threads": None, "partitions": 0, "rows": 0}


class _SerialModel:
    """The cached model behind a per-process lock, so concurrent tasks in one
    worker process take turns on the (multi-threaded) network."""

    def __init__(self, model, lock):
        self._model = model
        self._lock = lock

    def __call__(self, x, **kw):
        with self._lock:
            return self._model(x, **kw)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _apply_threads(n: Optional[int]) -> Optional[int]:
    n = check_num_threads(n, "worker thread budget")
    if n is None:
        return None
    from . import get_num_threads, set_num_threads
    if get_num_threads() != n:
        set_num_threads(n)
    _STATE["num_threads"] = n
    return n


def get_predictor(source: ModelSource, options: Dict[str, Any], num_threads: Optional[int] = None):
    """The cached :class:`mobilevit.Predictor` of this process for ``source``
    and ``options`` (top_k, batch_size, preset, multi_scale); the model is built
    on first use only.  ``num_threads`` is applied with
    :func:`mobilevit.set_num_threads` and passed to the network calls."""
    from .predictor import Predictor
    n = _apply_threads(num_threads)
    key = (source.key, tuple(sorted(options.items())), n)
    pred = _PREDICTORS.get(key)
    if pred is not None:
        return pred
    with _BUILD_LOCK:
        pred = _PREDICTORS.get(key)
        if pred is not None:
            return pred
        model = _MODELS.get(source.key)
        if model is None:
            model = source.load()
            _MODELS[source.key] = model
            _STATE["model_builds"] += 1
        decode_threads = options.get("num_workers") or max(1, n or 1)
        opts = {k: v for k, v in options.items() if k != "num_workers"}
        pred = Predictor(_SerialModel(model, _RUN_LOCK), num_workers=decode_threads, num_threads=n, **opts)
        _PREDICTORS[key] = pred
        return pred


def count_rows(n: int) -> None:
    """Record one predicted partition / batch of ``n`` rows for :func:`worker_info`."""
    _STATE["partitions"] += 1
    _STATE["rows"] += n


def worker_info() -> dict:
    """This process's cache: pid, models built, model keys, thread budget,
    partitions and rows predicted (``client.run(mobilevit.dask.worker_info)``)."""
    return {"pid": os.getpid(), "model_builds": _STATE["model_builds"], "models": sorted(_MODELS),
            "num_threads": _STATE["num_threads"], "partitions": _STATE["partitions"], "rows": _STATE["rows"]}


# ---------------------------------------------------------------------------------------------
# Rows -> Arrow-backed columns
# ---------------------------------------------------------------------------------------------
def arrow_schema():
    """The pyarrow schema of :data:`OUTPUT_COLUMNS`."""
    import pyarrow as pa
    return pa.schema([("path", pa.string()), ("labels", pa.list_(pa.string())),
                      ("scores", pa.list_(pa.float64())), ("class_ids", pa.list_(pa.int64())),
                      ("error", pa.string())])


def path_of(item) -> Optional[str]:
    """The ``path`` cell of an input: the path (undecodable bytes as ``\\xNN``,
    :func:`mobilevit.predictor.display_name`), or None for in-memory data."""
    if isinstance(item, (str, os.PathLike)):
        return display_name(os.fspath(item))
    return None


def rows_to_columns(items: Sequence, rows: List[dict]) -> Dict[str, list]:
    """Predictor rows (one per item, in order) to the output columns as lists."""
    if len(rows) != len(items):  # the Predictor's contract; never silently drop or duplicate
        raise RuntimeError(f"predictor returned {len(rows)} rows for {len(items)} inputs")
    cols: Dict[str, list] = {c: [] for c in OUTPUT_COLUMNS}
    for i, row in enumerate(rows):
        if row["index"] != i:
            raise RuntimeError(f"predictor row {i} carries index {row['index']}")
        for c in OUTPUT_COLUMNS:
            cols[c].append(row[c])
    return cols


def columns_to_arrow(cols: Dict[str, list]):
    """Columns (as lists) to a ``pyarrow.Table`` with :func:`arrow_schema`."""
    import pyarrow as pa
    return pa.Table.from_pydict(cols, schema=arrow_schema())


def to_pandas(cols: Dict[str, list], index=None):
    """Columns (as lists) to a pandas DataFrame with Arrow-backed dtypes."""
    import pandas as pd
    df = columns_to_arrow(cols).to_pandas(types_mapper=pd.ArrowDtype)
    if index is not None:
        df.index = index
    return df


def empty_frame(index_dtype="int64"):
    """A 0-row frame with the output columns (Dask's ``meta``)."""
    import pandas as pd
    return to_pandas({c: [] for c in OUTPUT_COLUMNS}, pd.Index([], dtype=index_dtype))
