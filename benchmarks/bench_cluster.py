"""Images/second: one process (``mobilevit.Predictor``, all cores) against a
2-worker ``distributed.LocalCluster`` (1 thread each) running
``mobilevit.dask.predict`` on the same machine, over ~200 small PNGs; with
``--ray`` also Ray Data ``map_batches(MobileViTPredictor)`` with 2 actors of 1
CPU.  Prints a markdown row (header with ``--header``).

    python benchmarks/bench_cluster.py [--n 200] [--model mobilevit_xxs] [--size 256] [--repeats 3] [--ray]

Warm-up runs are excluded (model build on every worker, cluster start-up is
reported separately); each figure is the best of ``--repeats`` timed runs.
Everything listens on 127.0.0.1 only.  Needs ``dask[distributed]``, pandas,
pyarrow (and ``ray[data]`` for ``--ray``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mobilevit  # noqa: E402
from mobilevit.preprocess import Preprocess  # noqa: E402


def make_images(folder, n, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = os.path.join(folder, f"img_{i:04d}.png")
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="mobilevit_xxs")
    ap.add_argument("--size", type=int, default=256, help="network input (crop) size")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray", action="store_true", help="also time Ray Data (if ray is installed)")
    ap.add_argument("--header", action="store_true")
    args = ap.parse_args(argv)

    cores = os.cpu_count() or 1
    model = mobilevit.create_model(args.model, num_classes=1000)
    preset = Preprocess.from_name("hf").resized(args.size, args.size)
    tmp = tempfile.mkdtemp(prefix="mobilevit_bench_cluster_")
    paths = make_images(tmp, args.n)
    # ~4 tasks per worker, each a whole number of network batches
    part = max(1, -(-args.n // (4 * args.workers)))
    part = -(-part // args.batch_size) * args.batch_size

    # ---- one process, all cores --------------------------------------------------------------
    mobilevit.set_num_threads(cores)
    pred = mobilevit.Predictor(model, preset=preset, batch_size=args.batch_size, top_k=5)
    list(pred.predict(paths[:args.batch_size]))                   # warm-up
    t1 = best_of(lambda: list(pred.predict(paths)), args.repeats)

    # ---- Dask LocalCluster ---------------------------------------------------------------------
    from distributed import Client, LocalCluster
    import mobilevit.dask as mdask
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    client.wait_for_workers(args.workers)
    startup = time.perf_counter() - t0
    try:
        kw = dict(model=model, preset=preset, batch_size=args.batch_size, top_k=5)
        mdask.predict(paths[:4 * args.workers], partition_size=4, **kw).compute()   # build on workers
        td = best_of(lambda: mdask.predict(paths, partition_size=part, **kw).compute(), args.repeats)
        builds = sum(w["model_builds"] for w in client.run(mdask.worker_info).values())
    finally:
        client.close()
        cluster.close()

    tr = None
    if args.ray:
        tr = bench_ray(model, preset, paths, args)

    cols = ["cores", "images", "model @ input", "1 process img/s", f"Dask {args.workers}x1 img/s", "speedup",
            "cluster start s", "worker model builds"]
    vals = [str(cores), str(args.n), f"{args.model} @ {args.size}", f"{args.n / t1:.1f}", f"{args.n / td:.1f}",
            f"{t1 / td:.2f}x", f"{startup:.1f}", str(builds)]
    if args.ray:
        cols.insert(6, f"Ray Data {args.workers}x1 img/s")
        vals.insert(6, "n/a" if tr is None else f"{args.n / tr:.1f}")
    if args.header:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" for _ in cols) + "|")
    print("| " + " | ".join(vals) + " |")


def bench_ray(model, preset, paths, args):
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # node address 127.0.0.1, loopback listeners only
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
        import ray.data
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER = False
    except ImportError:
        print("ray is not installed: skipped", file=sys.stderr)
        return None
    from mobilevit.ray import MobileViTPredictor
    pkg_parent = os.path.dirname(os.path.dirname(mobilevit.__file__))
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": pkg_parent}})
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False

        def run(ps):
            ds = ray.data.from_items([{"path": p} for p in ps], override_num_blocks=4 * args.workers)
            return ds.map_batches(MobileViTPredictor, batch_size=args.batch_size, num_cpus=1,
                                  compute=ray.data.ActorPoolStrategy(size=args.workers),
                                  fn_constructor_kwargs={"model": model, "preset": preset,
                                                         "batch_size": args.batch_size}).count()
        # each run starts its own actor pool, so the timed runs include the actors' model build
        run(paths[:8])
        return best_of(lambda: run(paths), args.repeats)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
