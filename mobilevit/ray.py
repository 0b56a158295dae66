"""Batch prediction with Ray Data: :class:`MobileViTPredictor`, a callable
class for ``ray.data.Dataset.map_batches``.

    >>> import ray, ray.data
    >>> from mobilevit.ray import MobileViTPredictor
    >>> ds = ray.data.read_binary_files("/shared/images/", include_paths=True)   # columns: bytes, path
    >>> out = ds.map_batches(MobileViTPredictor, fn_constructor_kwargs={"weights": "/shared/mobilevit_s"},
    ...                      batch_size=64, num_cpus=2, compute=ray.data.ActorPoolStrategy(size=4))
    >>> out.write_parquet("/shared/predictions/")

Ray Data runs a callable class as a pool of actors: ``__init__`` runs once per
actor (the model is built there, once), ``__call__`` once per batch.  Ray is
imported lazily, so this module imports without ray installed (only
:func:`ray_cpu_budget` touches it).

Output columns, one row per input row, in order (the same as
:func:`mobilevit.dask.predict`): ``path`` (string, null for bytes without a
path), ``labels`` (list<string>, top-k best first), ``scores``
(list<double>), ``class_ids`` (list<int64>), ``error`` (string or null; a file
that cannot be read or decoded gives an error row, not a failed task), plus
any input columns named in ``keep_columns``.  By default a ``pyarrow.Table``
is returned (Ray Data takes it as the output block whatever the input
``batch_format``; ``write_parquet`` stores the lists as Parquet LIST).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

from .dask import ModelSource, columns_to_arrow, get_predictor, rows_to_columns

__all__ = ["MobileViTPredictor", "ray_cpu_budget"]


def ray_cpu_budget() -> Optional[int]:
    """CPUs reserved for the current Ray actor/task (``num_cpus=`` of
    ``map_batches``), else ``OMP_NUM_THREADS`` (which Ray sets to the same
    number for a task/actor), else None (outside Ray)."""
    try:
        import ray
        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, int(round(cpus)))
    except Exception:  # ray missing, or not inside a worker: fall through
        pass
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    return None


def _column(batch, name):
    """A column of a dict-of-arrays / pandas / pyarrow batch as a Python list, or None."""
    try:
        if name not in (batch.column_names if hasattr(batch, "column_names") else batch):
            return None
    except TypeError:
        return None
    col = batch[name]
    if hasattr(col, "to_pylist"):      # pyarrow
        return col.to_pylist()
    if hasattr(col, "tolist"):         # numpy / pandas
        return col.tolist()
    return list(col)


def _batch_len(batch) -> int:
    if hasattr(batch, "num_rows"):
        return batch.num_rows
    if hasattr(batch, "shape") and hasattr(batch, "columns"):
        return int(batch.shape[0])
    for v in batch.values():
        return len(v)
    return 0


class MobileViTPredictor:
    """Top-k image classification for ``Dataset.map_batches``.

    Constructor (pass through ``fn_constructor_kwargs``; runs once per actor):

    * ``weights``: checkpoint file or folder readable by every node (anything
      :func:`mobilevit.from_pretrained` reads), or
    * ``model``: an in-memory :class:`mobilevit.MobileViT` (its small pickle
      travels with the actor's constructor arguments), or neither for the
      bundled default model; ``model_name`` forces the variant for ``weights``.
    * ``top_k``, ``batch_size``, ``preset``, ``multi_scale``: as for
      :class:`mobilevit.Predictor` (``batch_size`` is the network batch, not
      Ray's ``map_batches(batch_size=)``).
    * ``num_threads``: OpenMP threads for this actor; default: the CPUs the actor
      reserved (``map_batches(num_cpus=N)``), else ``OMP_NUM_THREADS``.  Applied
      with :func:`mobilevit.set_num_threads`.
    * ``path_column`` / ``bytes_column``: input column names.  When the batch has
      encoded image bytes (``read_binary_files`` gives ``bytes`` and, with
      ``include_paths=True``, ``path``) the bytes are decoded and the path only
      names the row; otherwise the files in ``path_column`` are opened.
    * ``keep_columns``: input columns copied to the output (e.g. an id).
    * ``output_format``: ``"arrow"`` (a ``pyarrow.Table``, default) or
      ``"pandas"`` (Arrow-backed dtypes).

    ``__call__(batch)`` takes a ``dict[str, np.ndarray]`` (Ray's ``"numpy"``
    batch format), a pandas DataFrame or a pyarrow Table and returns one output
    row per input row, in order.
    """

    def __init__(self, weights=None, model=None, top_k: int = 5, batch_size: int = 16, preset=None,
                 multi_scale: bool = False, num_threads: Optional[int] = None, model_name: Optional[str] = None,
                 path_column: str = "path", bytes_column: str = "bytes", keep_columns: Sequence[str] = (),
                 output_format: str = "arrow", decode_threads: Optional[int] = None):
        if output_format not in ("arrow", "pandas"):
            raise ValueError(f"output_format must be 'arrow' or 'pandas', got {output_format!r}")
        self.source = model if isinstance(model, ModelSource) else ModelSource(weights, model, model_name)
        self.options: Dict[str, Any] = {"top_k": int(top_k), "batch_size": int(batch_size), "preset": preset,
                                        "multi_scale": bool(multi_scale)}
        if decode_threads:
            self.options["num_workers"] = int(decode_threads)
        from .predictor import check_num_threads
        self.num_threads = check_num_threads(num_threads) if num_threads is not None else ray_cpu_budget()
        self.path_column = path_column
        self.bytes_column = bytes_column
        self.keep_columns = tuple(keep_columns)
        self.output_format = output_format
        # build the model now (once per actor), not on the first batch
        self.predictor = get_predictor(self.source, self.options, self.num_threads)

    def __call__(self, batch):
        n = _batch_len(batch)
        data = _column(batch, self.bytes_column)
        paths = _column(batch, self.path_column)
        if data is None and paths is None:
            cols = list(batch.column_names if hasattr(batch, "column_names") else batch)
            raise KeyError(f"batch has neither a {self.path_column!r} nor a {self.bytes_column!r} column "
                           f"(columns: {cols})")
        items = data if data is not None else paths
        if len(items) != n:
            raise RuntimeError(f"column has {len(items)} values for a batch of {n} rows")
        rows = list(self.predictor.predict(items))
        cols = rows_to_columns(items, rows)
        if paths is not None:
            from .predictor import display_name
            cols["path"] = [None if p is None else display_name(os.fspath(p)) for p in paths]
        table = columns_to_arrow(cols)
        for name in self.keep_columns:
            if name in table.column_names:
                continue
            values = _column(batch, name)
            if values is None:
                raise KeyError(f"keep_columns: the batch has no column {name!r}")
            import pyarrow as pa
            table = table.append_column(name, pa.array(values))
        if self.output_format == "pandas":
            import pandas as pd
            return table.to_pandas(types_mapper=pd.ArrowDtype)
        return table

    def __repr__(self):
        return (f"MobileViTPredictor({self.source!r}, top_k={self.options['top_k']}, "
                f"num_threads={self.num_threads})")
