"""Batch prediction with Ray Data: :func:`predict` (the short way) and
:class:`MobileViTPredictor`, a callable class for ``ray.data.Dataset.map_batches``.

    >>> import ray, ray.data
    >>> import mobilevit.ray
    >>> ds = ray.data.read_binary_files("/shared/images/", include_paths=True)   # columns: bytes, path
    >>> out = mobilevit.ray.predict(ds, weights="/shared/mobilevit_s", num_cpus=2)   # actors sized to the cluster
    >>> out.write_parquet("/shared/predictions/")

or, spelled out (:func:`actor_pool` checks that the pool fits the cluster's CPUs: Ray itself
waits without a message for actors it cannot place)::

    >>> out = ds.map_batches(MobileViTPredictor, fn_constructor_kwargs={"weights": "/shared/mobilevit_s"},
    ...                      batch_size=64, num_cpus=2, compute=mobilevit.ray.actor_pool(num_cpus=2))

Ray Data runs a callable class as a pool of actors: ``__init__`` runs once per
actor (the model is built there, once), ``__call__`` once per batch.  Ray is
imported lazily, so this module imports without ray installed.

Output columns, one row per input row, in order (the same as
:func:`mobilevit.dask.predict`, the CLI and :class:`mobilevit.Predictor`, see
:data:`mobilevit.predictor.ROW_FIELDS`): ``path`` (string, null for bytes
without a path), ``labels`` (list<string>, top-k best first), ``scores``
(list<double>), ``class_ids`` (list<int64>), ``error`` (string or null; a file
that cannot be read or decoded gives an error row naming its path, not a
failed task), plus any input columns named in ``keep_columns``.  By default a
``pyarrow.Table`` is returned (Ray Data takes it as the output block whatever
the input ``batch_format``; ``write_parquet`` stores the lists as Parquet LIST).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

from .cluster import ModelSource, columns_to_arrow, count_rows, get_predictor, rows_to_columns

__all__ = ["MobileViTPredictor", "predict", "actor_pool", "ray_cpu_budget"]


def _cluster_cpus() -> int:
    import ray
    if not ray.is_initialized():
        raise RuntimeError("ray is not initialised: call ray.init() (or ray.init(address='auto')) first")
    return int(ray.cluster_resources().get("CPU", 0))


def actor_pool(num_cpus: int = 1, size: Optional[int] = None):
    """A ``ray.data.ActorPoolStrategy`` that fits the running cluster: ``size`` actors of
    ``num_cpus`` CPUs each (default: as many as fit), leaving one CPU for the dataset's read and
    write tasks.

    Ray waits without a message for work it cannot place: ``ActorPoolStrategy(size=4)`` with
    ``num_cpus=2`` on a 2-core machine never starts, and neither does a pool that takes every
    CPU, because ``read_binary_files``' read task then has none.  This raises ValueError
    instead, naming what was asked and what the cluster has."""
    import ray.data
    from .threads import check_num_threads
    num_cpus = check_num_threads(num_cpus, "num_cpus")
    cpus = _cluster_cpus()
    fit = (cpus - 1) // num_cpus       # one CPU stays free for the read / write tasks
    if fit < 1:
        raise ValueError(f"num_cpus={num_cpus} per actor plus 1 CPU for Ray Data's read/write tasks needs "
                         f"{num_cpus + 1} CPUs, but the Ray cluster has {cpus}: ray would wait forever; use "
                         f"num_cpus <= {max(1, cpus - 1)}" + (" (or a cluster with more CPUs)" if cpus < 2 else ""))
    if size is None:
        size = fit
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if size > fit:
        raise ValueError(f"{size} actors x {num_cpus} CPUs + 1 CPU for Ray Data's read/write tasks = "
                         f"{size * num_cpus + 1} CPUs, but the Ray cluster has {cpus}: ray would wait forever "
                         f"for the rest; use size <= {fit} or fewer CPUs per actor")
    return ray.data.ActorPoolStrategy(size=size)


def predict(ds, weights=None, model=None, num_cpus: int = 1, actors: Optional[int] = None,
            rows_per_call: int = 64, **options):
    """Top-k classification of a Ray dataset (a ``path`` column, or ``bytes`` + ``path`` from
    ``read_binary_files(include_paths=True)``); returns the lazy output dataset (columns of
    the module docstring).

    ``weights`` / ``model``: as for :class:`MobileViTPredictor` (neither: the bundled default
    model).  ``num_cpus``: CPUs (= OpenMP threads) per actor; ``actors``: pool size (default:
    as many as fit the cluster, see :func:`actor_pool`).  ``rows_per_call``: Ray's
    ``map_batches(batch_size=)``.  Other keyword arguments (``top_k``, ``batch_size`` (the
    network batch), ``preset``, ``keep_columns``, ...) go to :class:`MobileViTPredictor`."""
    kwargs = dict(options, weights=weights, model=model)
    return ds.map_batches(MobileViTPredictor, fn_constructor_kwargs=kwargs, batch_size=rows_per_call,
                          num_cpus=num_cpus, compute=actor_pool(num_cpus, actors))


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
        # the path names each row (and its error message) even when the bytes are decoded
        rows = list(self.predictor.predict(items, names=paths))
        cols = rows_to_columns(items, rows)
        count_rows(n)
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
        """The model source, top_k and thread count."""
        return (f"MobileViTPredictor({self.source!r}, top_k={self.options['top_k']}, "
                f"num_threads={self.num_threads})")
