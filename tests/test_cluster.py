"""Scale-out adapters (issue "Scale out with Dask and Ray Data"):
``mobilevit.dask.predict`` on a real 2-process ``distributed.LocalCluster``
(loopback only, no dashboard) and ``mobilevit.ray.MobileViTPredictor`` under
``ray.data`` when ray runs here.

What is proven: the cluster results equal a single-process Predictor run
(same labels, class ids, scores and error strings, in input order); every
input appears exactly once for every input form (list, bag, dask DataFrame
column, weights path or pickled model); an unreadable or missing file is an
error row, not a failed job; each worker process builds the model once and
runs with its thread budget; a worker process killed mid-run (it exits from
inside a task on the first attempt) loses no input and duplicates none."""
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image

import mobilevit
from mobilevit.preprocess import Preprocess

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

TOP_K = 3
N_IMAGES = 26
PRESET = Preprocess.from_name("hf").resized(64, 64)   # small network input keeps the suite fast


# ---------------------------------------------------------------------------------------------
# fixtures: images, a small model, its reference (single-process) predictions
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster_images")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(N_IMAGES):
        p = d / f"img_{i:03d}.png"
        h, w = (64, 64) if i % 3 else (48, 80)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    bad = d / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    paths.insert(4, str(bad))
    paths.insert(11, str(d / "does_not_exist.png"))
    return {"dir": d, "paths": paths, "bad": str(bad), "missing": str(d / "does_not_exist.png")}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = mobilevit.create_model("mobilevit_xxs", num_classes=5, seed=3)
    m.class_names = ["ant", "bee", "cat", "dog", "eel"]
    return m


@pytest.fixture(scope="module")
def weights_dir(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster_model")
    model.save(str(d))
    return str(d)


@pytest.fixture(scope="module")
def reference(model, files):
    """The single-process answer, as {path: (labels, class_ids, scores, error)} and in order."""
    pred = mobilevit.Predictor(model, preset=PRESET, batch_size=4, top_k=TOP_K, num_threads=1)
    rows = list(pred.predict(files["paths"]))
    assert [r["index"] for r in rows] == list(range(len(files["paths"])))
    return [(r["path"], r["labels"], r["class_ids"],
             r["scores"], r["error"]) for r in rows]


def _null(v):
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v


def _as_rows(df):
    return [(_null(p), list(l), [int(x) for x in c], list(s), _null(e))
            for p, l, c, s, e in zip(df["path"], df["labels"], df["class_ids"], df["scores"], df["error"])]


def _assert_same(got_rows, ref_rows, ordered=True):
    if not ordered:
        got_rows = sorted(got_rows, key=lambda r: r[0])
        ref_rows = sorted(ref_rows, key=lambda r: r[0])
    assert len(got_rows) == len(ref_rows)
    for g, r in zip(got_rows, ref_rows):
        assert g[0] == r[0]
        assert g[4] == r[4], (g, r)
        assert g[1] == r[1] and g[2] == r[2], (g, r)
        np.testing.assert_allclose(g[3], r[3], rtol=1e-6, atol=1e-9)


def _exactly_once(paths_out, paths_in):
    assert sorted(paths_out) == sorted(paths_in)
    assert len(set(paths_out)) == len(paths_out)


# ---------------------------------------------------------------------------------------------
# no cluster needed: the module imports cleanly and the Ray callable works on a plain dict batch
# ---------------------------------------------------------------------------------------------
def test_package_does_not_import_dask_or_ray():
    import subprocess
    code = ("import sys, mobilevit, mobilevit.ray, mobilevit.dask, mobilevit.cluster, mobilevit.notebook; "
            "print(sorted(m for m in ('dask', 'distributed', 'ray', 'pandas', 'pyarrow', 'matplotlib') "
            "if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(mobilevit.__file__))]
                                                      + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ray_callable_on_dict_batch_without_ray(model, files, reference):
    from mobilevit.ray import MobileViTPredictor
    paths = files["paths"][:8]
    fn = MobileViTPredictor(model=model, top_k=TOP_K, batch_size=4, preset=PRESET, num_threads=1)
    out = fn({"path": np.array(paths, dtype=object)})
    assert out.column_names[:5] == ["path", "labels", "scores", "class_ids", "error"]
    _assert_same(_as_rows(out.to_pandas()), reference[:8])
    # raw bytes: decoded from the bytes, named by the path column if there is one
    blobs = [open(p, "rb").read() if os.path.exists(p) else b"" for p in paths]
    fn2 = MobileViTPredictor(model=model, top_k=TOP_K, batch_size=4, preset=PRESET, num_threads=1,
                             keep_columns=["id"], output_format="pandas")
    out2 = fn2({"bytes": np.array(blobs, dtype=object), "path": np.array(paths, dtype=object), "id": np.arange(8)})
    assert list(out2["id"]) == list(range(8))
    rows = _as_rows(out2)
    assert [g[0] for g in rows] == paths
    for g, r in zip(rows, reference[:8]):
        if r[4] is None:
            _assert_same([g], [r])
        else:                       # the corrupt file, and b"" for the missing one
            assert g[4] and g[1] == [] and g[3] == []


# ---------------------------------------------------------------------------------------------
# Dask on a real 2-process LocalCluster
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers need not import this file
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, scheduler_port=0, silence_logs=40)
    c = distributed.Client(cluster)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()


def test_dask_equals_single_process(client, model, files, reference):
    import mobilevit.dask as mdask
    df = mdask.predict(files["paths"], model=model, top_k=TOP_K, batch_size=4, preset=PRESET, partition_size=5)
    assert df.npartitions == -(-len(files["paths"]) // 5)
    assert list(df.columns) == ["path", "labels", "scores", "class_ids", "error"]
    out = df.compute()
    assert list(out.index) == list(range(len(files["paths"])))
    _assert_same(_as_rows(out), reference)
    _exactly_once(list(out["path"]), files["paths"])
    # model built once per worker process, threads = the worker's budget (nthreads=1)
    info = client.run(mdask.worker_info)
    assert len(info) == 2
    for w in info.values():
        assert w["model_builds"] == len(w["models"]) and w["models"].count(w["models"][0]) == 1
        assert w["num_threads"] == 1
    assert sum(w["partitions"] for w in info.values()) >= df.npartitions


def test_dask_input_forms_and_weights_path(client, model, weights_dir, files, reference):
    import dask.bag as db
    import dask.dataframe as dd
    import mobilevit.dask as mdask
    paths = files["paths"]
    kw = dict(top_k=TOP_K, batch_size=4, preset=PRESET)
    by_path = mdask.predict(paths, weights=weights_dir, partition_size=7, threads_per_worker=1, **kw)
    bag = mdask.predict(db.from_sequence(paths, npartitions=4), model=model, **kw)
    frame = dd.from_pandas(pd.DataFrame({"file": paths, "other": range(len(paths))}), npartitions=3)
    col = mdask.predict(frame, model=model, column="file", **kw)
    import dask
    r_path, r_bag, r_col = dask.compute(by_path, bag, col)
    # weights path: class names come from the saved folder, predictions are the same network
    _assert_same(_as_rows(r_path), reference)
    _assert_same(_as_rows(r_bag), reference)
    _assert_same(_as_rows(r_col), reference)
    assert list(r_col.index) == list(range(len(paths)))     # a DataFrame's own index is kept
    info = client.run(mdask.worker_info)
    for w in info.values():                                  # still one build per model per process
        assert w["model_builds"] == len(w["models"]) == len(set(w["models"]))


def test_unreadable_file_is_an_error_row(client, model, files):
    import mobilevit.dask as mdask
    paths = [files["bad"], files["missing"], files["paths"][0], 12345]
    out = mdask.predict(paths, model=model, top_k=TOP_K, preset=PRESET, partition_size=2).compute()
    assert len(out) == 4
    err = list(out["error"])
    assert err[0] and err[1] and "not found" in err[1].lower()
    assert _null(err[2]) is None
    assert err[3]                                              # not a path at all: still a row
    assert _null(out["path"].iloc[3]) is None
    assert [len(x) for x in out["labels"]] == [0, 0, TOP_K, 0]


def test_parquet_round_trip(client, model, files, tmp_path):
    import dask.dataframe as dd
    import mobilevit.dask as mdask
    df = mdask.predict(files["paths"][:9], model=model, top_k=TOP_K, preset=PRESET, partition_size=4)
    df.to_parquet(str(tmp_path / "pq"))
    back = dd.read_parquet(str(tmp_path / "pq"), dtype_backend="pyarrow").compute()
    ref = df.compute()
    assert list(back["path"]) == list(ref["path"])
    assert [list(x) for x in back["labels"]] == [list(x) for x in ref["labels"]]
    import pyarrow.parquet as pq
    schema = pq.read_schema(next(p for p in (tmp_path / "pq").iterdir() if p.suffix == ".parquet"))
    assert str(schema.field("labels").type) in ("list<element: string>", "list<item: string>")
    assert str(schema.field("scores").type) in ("list<element: double>", "list<item: double>")


def _die_once(path, marker, victim):
    """Inside a worker: on the first attempt at ``victim`` kill this worker
    process (no cleanup), as a crashed/OOM-killed worker would die."""
    if path == victim and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(17)
    return path


def test_worker_killed_mid_run_loses_no_input(client, model, files, reference, tmp_path):
    import dask.bag as db
    import mobilevit.dask as mdask
    paths = files["paths"]
    marker = str(tmp_path / "killed.pid")
    victim = paths[len(paths) // 2]
    pids_before = set(w["pid"] for w in client.run(mdask.worker_info).values())
    bag = db.from_sequence(paths, npartitions=6).map(_die_once, marker, victim)
    out = mdask.predict(bag, model=model, top_k=TOP_K, batch_size=4, preset=PRESET).compute()
    assert os.path.exists(marker), "the worker was not killed"
    killed = int(open(marker).read())
    assert killed in pids_before
    _assert_same(_as_rows(out), reference)                       # nothing lost, nothing duplicated
    _exactly_once(list(out["path"]), paths)
    client.wait_for_workers(2, timeout=60)                       # the nanny brought a new process up
    deadline = time.time() + 30
    while time.time() < deadline:
        pids = set(w["pid"] for w in client.run(mdask.worker_info).values())
        if len(pids) == 2 and killed not in pids:
            break
        time.sleep(0.2)
    assert killed not in pids and len(pids) == 2


# ---------------------------------------------------------------------------------------------
# Ray Data (skipped with the reason when ray is missing or cannot start a local instance)
# ---------------------------------------------------------------------------------------------
def _loopback_only_ray_env():
    """Ray turns 127.0.0.1 into the machine's routable address (``services.
    resolve_ip_for_localhost``) and then listens there; with its "no cluster"
    switch off it uses 127.0.0.1 as the node address and binds its GCS, raylet,
    object manager and workers to loopback only.  The switch is read when ray is
    imported (and by every ray process it starts, through the environment)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="module")
def ray_local():
    _loopback_only_ray_env()
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    try:
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER = False      # in case ray was imported before the variable was set
    except Exception:  # pragma: no cover - ray internals moved
        pass
    if ray.is_initialized():
        pytest.skip("a ray instance is already running in this process")
    pkg_parent = os.path.dirname(os.path.dirname(mobilevit.__file__))
    py_path = os.pathsep.join([pkg_parent] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": py_path}})
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"ray cannot start a local instance here: {type(e).__name__}: {e}")
    try:
        ip = ray.util.get_node_ip_address()
        if ip not in ("127.0.0.1", "::1"):
            pytest.skip(f"ray would run on the non-loopback address {ip}; not started here")
        yield ray
    finally:
        ray.shutdown()


def test_ray_data_map_batches(ray_local, model, files, reference):
    import ray.data
    from mobilevit.ray import MobileViTPredictor
    ray.data.DataContext.get_current().enable_progress_bars = False
    paths = files["paths"]
    ds = ray.data.from_items([{"path": p, "n": i} for i, p in enumerate(paths)], override_num_blocks=4)
    out = ds.map_batches(MobileViTPredictor, batch_size=8, num_cpus=1,
                         compute=ray.data.ActorPoolStrategy(size=2),
                         fn_constructor_kwargs={"model": model, "top_k": TOP_K, "batch_size": 4,
                                                "preset": PRESET, "keep_columns": ["n"]})
    rows = out.take_all()
    assert len(rows) == len(paths)
    assert sorted(r["n"] for r in rows) == list(range(len(paths)))
    got = [(r["path"], list(r["labels"]), list(r["class_ids"]), list(r["scores"]), r["error"]) for r in rows]
    _assert_same(got, reference, ordered=False)
    _exactly_once([r["path"] for r in rows], paths)


def test_cluster_module_is_shared_without_import_cycles():
    import importlib
    import mobilevit.cluster as cluster
    import mobilevit.dask as mdask
    import mobilevit.ray as mray
    assert mdask.ModelSource is cluster.ModelSource is mray.ModelSource
    assert mdask.get_predictor is cluster.get_predictor is mray.get_predictor
    assert cluster.OUTPUT_COLUMNS == mobilevit.predictor.ROW_FIELDS
    src = open(cluster.__file__, encoding="utf-8").read()
    assert "from .dask" not in src and "from .ray" not in src
    assert "from .dask" not in open(mray.__file__, encoding="utf-8").read()
    importlib.reload(cluster)


def test_actor_pool_refuses_pools_that_would_wait_forever(ray_local):
    from mobilevit.ray import actor_pool
    cpus = int(ray_local.cluster_resources()["CPU"])
    for num_cpus, size in [(2, 4), (cpus, None), (1, cpus), (cpus + 1, 1), (1, 10 ** 4)]:
        with pytest.raises(ValueError, match="wait forever") as e:
            actor_pool(num_cpus, size)
        assert f"has {cpus}" in str(e.value)
    pool = actor_pool(1)
    assert pool.min_size == pool.max_size == cpus - 1          # one CPU left for the read task
    with pytest.raises(ValueError, match="num_cpus"):
        actor_pool(0)


def test_ray_predict_front_door_and_error_paths(ray_local, model, files, reference):
    import ray.data
    import mobilevit.ray
    ray.data.DataContext.get_current().enable_progress_bars = False
    paths = files["paths"][:6]
    ds = ray.data.from_items([{"bytes": open(p, "rb").read() if os.path.exists(p) else b"", "path": p}
                              for p in paths])
    rows = mobilevit.ray.predict(ds, model=model, top_k=TOP_K, preset=PRESET, num_cpus=1).take_all()
    assert [r["path"] for r in rows] == paths
    for r, ref in zip(rows, reference[:6]):
        assert (list(r["labels"]), list(r["class_ids"])) == (ref[1], ref[2])
        assert (r["error"] is None) == (ref[4] is None)
        if r["error"]:
            assert r["path"] in r["error"] and "bytes>" not in r["error"]
