#!/usr/bin/env python
"""Compare mobilevit with PyTorch eager (timm), ONNX Runtime and OpenVINO on the CPU.

    python benchmarks/bench_compare.py                      # full run, writes benchmarks/RESULTS.md + results.png
    python benchmarks/bench_compare.py --quick              # smoke test: few runs of everything
    python benchmarks/bench_compare.py --models mobilevit_s --batches 1 --threads 2 --runs 200
    python benchmarks/bench_compare.py --models all         # v1 + MobileViTv2 + DeepLabv3 (~40 min idle)
    python benchmarks/bench_compare.py --models extended    # only MobileViTv2 + DeepLabv3 (~25 min idle)

Models: the default set is MobileViT v1 (mobilevit_xxs/xs/s, timm, 256x256, batch 1 and 16).
``--models`` also takes mobilevitv2_050 / mobilevitv2_100 (timm, 256x256) and
deeplabv3_mobilevit_xxs / deeplabv3_mobilevit_s (transformers MobileViTForSemanticSegmentation,
21 classes, output stride 16, 512x512, batch 1 and ``--seg-batch`` (4) instead of 16), or the sets
v1, v2, seg, extended (v2 + seg), all.  mobilevit loads v1 with create_model + load_state_dict and
everything else with ``mobilevit.from_pretrained(state_dict)``.

What it does, in order:

1. Builds ``benchmarks/fma_peak.c`` with the system ``cc`` (AVX-512, else AVX2) and measures
   the fp32 FMA peak for each thread count (best of several repetitions).
2. One "prep" subprocess builds each timm / transformers model with fixed random weights
   (BatchNorm statistics and affine parameters randomised too, so folding bugs would show), saves
   the state dict as ``.npz``, a fixed random input per (image size, batch), the PyTorch reference
   logits, counts the MACs of one batch-1 forward with ``torch.utils.flop_counter.FlopCounterMode``,
   and writes a static-shape ONNX file per (model, batch) via ``torch.onnx.export(dynamo=False,
   opset 17)`` from the ``exportable=True`` timm model (no SDPA) or the transformers model wrapped
   to return ``.logits``.  The exported graph is checked by every ONNX based runtime against the
   same PyTorch logits.
3. Every (runtime, model, batch, threads) measurement runs in its own fresh subprocess, one after
   another (never concurrently), with the thread count set explicitly for that runtime and
   ``OMP_NUM_THREADS`` set before any import.  Warm-up, then timed runs of the inference call
   only; the worker reports median / min / max, the process's peak RSS (``ru_maxrss``, plus the
   RSS right after importing the runtime), and the max abs difference of its logits vs PyTorch.
4. One subprocess runs ``MobileViT.profile`` for mobilevit_s (else the last selected model) at
   2 threads (per-op-family time).
5. Writes the Markdown report (``--out``) and a PNG chart (``--png``); with models from more than
   one family (v1 / v2 / DeepLabv3) each family gets its own section of tables and its own row of
   chart panels.

Nothing here is timed concurrently with anything else we start; other jobs on the machine are
out of our control (the report records the load average before and after).
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODELS = ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"]  # default set (v1 classification)
V2_MODELS = ["mobilevitv2_050", "mobilevitv2_100"]  # timm MobileViTv2, 256x256
SEG_MODELS = ["deeplabv3_mobilevit_xxs", "deeplabv3_mobilevit_s"]  # HF DeepLabv3-MobileViT, 512x512
ALL_MODELS = MODELS + V2_MODELS + SEG_MODELS
# names accepted by --models besides the model keys
MODEL_SETS = {"v1": MODELS, "v2": V2_MODELS, "seg": SEG_MODELS, "extended": V2_MODELS + SEG_MODELS,
              "all": ALL_MODELS}
SHORT = {"mobilevit_xxs": "XXS", "mobilevit_xs": "XS", "mobilevit_s": "S",
         "mobilevitv2_050": "v2-0.5", "mobilevitv2_100": "v2-1.0",
         "deeplabv3_mobilevit_xxs": "DL-XXS", "deeplabv3_mobilevit_s": "DL-S"}
DISPLAY = {"mobilevit_xxs": "MobileViT-XXS", "mobilevit_xs": "MobileViT-XS", "mobilevit_s": "MobileViT-S",
           "mobilevitv2_050": "MobileViTv2-0.5", "mobilevitv2_100": "MobileViTv2-1.0",
           "deeplabv3_mobilevit_xxs": "DeepLabv3-MobileViT-XXS", "deeplabv3_mobilevit_s": "DeepLabv3-MobileViT-S"}
# transformers.MobileViTConfig of the DeepLabv3 models (num_labels=21, output_stride=16 for both)
HF_SEG = {
    "deeplabv3_mobilevit_xxs": {"hidden_sizes": [64, 80, 96], "neck_hidden_sizes": [16, 16, 24, 48, 64, 80, 320],
                                "expand_ratio": 2.0},
    "deeplabv3_mobilevit_s": {"hidden_sizes": [144, 192, 240], "neck_hidden_sizes": [16, 32, 64, 96, 128, 160, 640],
                              "expand_ratio": 4.0},
}
SEG_CLASSES = 21
# (key, title, models) in report / chart order
CHART_TITLE = {"v1": "MobileViT v1, 256×256", "v2": "MobileViTv2 (timm), 256×256",
               "seg": "DeepLabv3-MobileViT (HF), 512×512"}
GROUPS = [("v1", "MobileViT v1 classification, 256×256", MODELS),
          ("v2", "MobileViTv2 classification (timm), 256×256", V2_MODELS),
          ("seg", (f"DeepLabv3-MobileViT segmentation (HF transformers, {SEG_CLASSES} classes, output stride 16), "
                   "512×512"), SEG_MODELS)]
# analytic multiply-accumulates per 256x256 image, incl. the attention matmuls
# (see /work/shared/reference/perf-anchors.md section 1); only a cross-check now: the GFLOP/s
# column uses the MACs counted with torch.utils.flop_counter in the prep step for every model
MACS = {"mobilevit_xxs": 0.407e9, "mobilevit_xs": 1.026e9, "mobilevit_s": 2.001e9}
RUNTIMES = ["mobilevit", "torch", "onnxruntime", "openvino"]
LABEL = {"mobilevit": "mobilevit (ours)", "torch": "PyTorch eager", "onnxruntime": "ONNX Runtime",
         "openvino": "OpenVINO"}
IMG = 256
SEG_IMG = 512


def img_size(model):
    return SEG_IMG if model in SEG_MODELS else IMG


def model_batches(model, batches, seg_batch=4):
    """Batch sizes measured for `model`: segmentation models run `seg_batch` instead of every batch > 1."""
    if model not in SEG_MODELS:
        return list(batches)
    return sorted({1 if b == 1 else seg_batch for b in batches})


def model_batch(model, b, seg_batch=4):
    return b if model not in SEG_MODELS or b == 1 else seg_batch
TOL = 1e-4
BUSY = 0.25  # CPUs used by other processes during a measurement above which it is marked
RESULT_TAG = "@@RESULT@@ "


# --------------------------------------------------------------------------------------------
# FMA peak microbenchmark (benchmarks/fma_peak.c)
# --------------------------------------------------------------------------------------------

def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def build_fma_peak(workdir):
    """Compile fma_peak.c with the system cc; AVX-512 if the CPU has it, else AVX2.
    Returns (binary path, isa) or (None, reason)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler (cc) found"
    flags = cpu_flags()
    if "avx512f" in flags:
        candidates = [("avx512", ["-mavx512f", "-mfma"]), ("avx2", ["-mavx2", "-mfma"])]
    elif "avx2" in flags and "fma" in flags:
        candidates = [("avx2", ["-mavx2", "-mfma"])]
    else:
        return None, "CPU has neither AVX-512F nor AVX2+FMA"
    src = os.path.join(HERE, "fma_peak.c")
    errors = []
    for isa, extra in candidates:
        exe = os.path.join(workdir, f"fma_peak_{isa}")
        cmd = [cc, "-O2", *extra, "-fopenmp", src, "-o", exe]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode == 0:
            return exe, isa
        errors.append(f"{' '.join(cmd)}: {p.stderr.strip()[-300:]}")
    return None, "; ".join(errors)


def run_fma_peak(exe, threads, reps=7, iters=100_000_000):
    """Best-of-`reps` fp32 FMA GFLOP/s with `threads` OpenMP threads (pinned, one per core)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="close", OMP_PLACES="cores")
    p = subprocess.run([exe, str(threads), str(reps), str(iters)], capture_output=True, text=True,
                       env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Workers (run in their own subprocess: `bench_compare.py --worker KIND SPEC_JSON`)
# --------------------------------------------------------------------------------------------

def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _input_path(workdir, img, batch):
    return os.path.join(workdir, f"input_{img}_b{batch}.npy")


def _paths(workdir, model, batch):
    return {
        "weights": os.path.join(workdir, f"{model}.weights.npz"),
        "input": _input_path(workdir, img_size(model), batch),
        "ref": os.path.join(workdir, f"{model}_b{batch}.ref.npy"),
        "onnx": os.path.join(workdir, f"{model}_b{batch}.onnx"),
    }


def _randomise_bn(model, torch):
    """Non-trivial BatchNorm statistics / affine parameters (timm initialises mean 0, var 1)."""
    g = torch.Generator().manual_seed(1234)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            if mod.weight is not None:
                mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _timm_like_init(model, torch):
    """Re-initialise a transformers model the way timm does (conv: normal, std sqrt(2 / fan_out);
    linear and the final 1x1 classifier conv: normal, std 0.01; biases 0).  HF's default (normal,
    std 0.02 everywhere) shrinks the activations layer by layer until the logits are ~1e-44, i.e.
    denormal, which would make the timing meaningless."""
    g = torch.Generator().manual_seed(4321)
    convs = [mod for mod in model.modules() if isinstance(mod, torch.nn.Conv2d)]
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            fan_out = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels // mod.groups
            std = 0.01 if mod is convs[-1] else (2.0 / fan_out) ** 0.5
            mod.weight.data.copy_(torch.randn(mod.weight.shape, generator=g) * std)
        elif isinstance(mod, torch.nn.Linear):
            mod.weight.data.copy_(torch.randn(mod.weight.shape, generator=g) * 0.01)
        else:
            continue
        if mod.bias is not None:
            mod.bias.data.zero_()


def _hf_seg_model(name, torch):
    """transformers MobileViTForSemanticSegmentation for `name` (random weights)."""
    import transformers
    cfg = transformers.MobileViTConfig(num_labels=SEG_CLASSES, output_stride=16, image_size=SEG_IMG,
                                       **HF_SEG[name])
    return transformers.MobileViTForSemanticSegmentation(cfg).eval()


def _logits_module(model, torch):
    """Wrap a transformers model so that forward(x) returns the `.logits` tensor (for ONNX export)."""
    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(pixel_values=x).logits
    return Logits(model).eval()


def _count_macs(model, x, torch):
    """MACs (= FLOPs / 2) of one forward pass counted by torch.utils.flop_counter.FlopCounterMode:
    convolutions, linear layers and (batched) matmuls incl. attention; elementwise ops, norms,
    softmax and resizing are not counted.  Returns (MACs, {op: MACs})."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    by_op = {str(k).replace("aten.", ""): v / 2 for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return fc.get_total_flops() / 2, by_op


def worker_prep(spec):
    """Weights, inputs, PyTorch reference logits and ONNX files for every (model, batch)."""
    import warnings
    os.environ.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    import numpy as np
    import torch
    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    import timm

    workdir, out = spec["workdir"], {"models": {}, "onnx": {}}
    mbatches = spec["model_batches"]
    # one fixed random input per (image size, batch): the first rows of one array per image size
    for img, seed in ((IMG, 0), (SEG_IMG, 1)):
        bs = sorted({b for m, bl in mbatches.items() if img_size(m) == img for b in bl})
        if not bs:
            continue
        rng = np.random.default_rng(seed)
        xall = rng.standard_normal((max(bs), 3, img, img), dtype=np.float32)
        for b in bs:
            np.save(_input_path(workdir, img, b), np.ascontiguousarray(xall[:b]))
    for name in spec["models"]:
        torch.manual_seed(0)
        hf = name in SEG_MODELS
        if hf:
            ref_model = _hf_seg_model(name, torch)
            with torch.no_grad():
                _timm_like_init(ref_model, torch)
                _randomise_bn(ref_model, torch)
            exp_model = _logits_module(ref_model, torch)  # HF MobileViT has no SDPA path: same module
            fwd = exp_model
        else:
            ref_model = timm.create_model(name, pretrained=False).eval()  # default: fused attention (SDPA)
            with torch.no_grad():
                _randomise_bn(ref_model, torch)
            exp_model = timm.create_model(name, pretrained=False, exportable=True).eval()
            exp_model.load_state_dict(ref_model.state_dict())
            fwd = ref_model
        # timm keys for timm models, HF keys for the HF models (mobilevit.from_pretrained detects both)
        sd = {k: v.detach().cpu().numpy() for k, v in ref_model.state_dict().items()
              if not k.endswith("num_batches_tracked")}
        np.savez(_paths(workdir, name, 1)["weights"], **sd)
        info = {"params": int(sum(v.size for v in sd.values() if v.ndim > 0)), "img": img_size(name),
                "source": (f"transformers {transformers_version()} MobileViTForSemanticSegmentation" if hf
                           else f"timm {timm.__version__}")}
        # FLOPs: counted on the exportable model (explicit attention matmuls; FlopCounterMode has no
        # formula for the CPU SDPA kernel), batch 1
        try:
            x1 = torch.from_numpy(np.load(_input_path(workdir, img_size(name), 1))) \
                if os.path.exists(_input_path(workdir, img_size(name), 1)) \
                else torch.zeros(1, 3, img_size(name), img_size(name))
            info["macs"], info["macs_by_op"] = _count_macs(exp_model, x1[:1], torch)
        except Exception as e:  # noqa: BLE001 - report, fall back to the analytic figure if any
            info["macs_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        for b in mbatches[name]:
            p = _paths(workdir, name, b)
            x = torch.from_numpy(np.load(p["input"]))
            with torch.inference_mode():
                ref = fwd(x).numpy()
                ref_exp = ref if hf else exp_model(x).numpy()
            np.save(p["ref"], ref)
            info[f"max_abs_logit_b{b}"] = float(np.abs(ref).max())
            if not hf:
                info[f"exportable_vs_sdpa_b{b}"] = float(np.abs(ref - ref_exp).max())
            # ONNX: legacy TorchScript exporter first (static shape, BN folded), dynamo as fallback
            status = None
            errors = []
            for dynamo in (False, True):
                t0 = time.perf_counter()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        kw = dict(input_names=["input"], output_names=["logits"], opset_version=17)
                        if dynamo:
                            torch.onnx.export(exp_model, (x,), p["onnx"], dynamo=True, **kw)
                        else:
                            torch.onnx.export(exp_model, (x,), p["onnx"], dynamo=False,
                                              do_constant_folding=True, **kw)
                    status = {"ok": True, "exporter": "dynamo" if dynamo else "torchscript (dynamo=False)",
                              "opset": 17, "seconds": round(time.perf_counter() - t0, 1),
                              "bytes": os.path.getsize(p["onnx"])}
                    break
                except Exception as e:  # noqa: BLE001 - report and try the other exporter
                    errors.append(f"dynamo={dynamo}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            if status is None:
                status = {"ok": False, "error": " | ".join(errors)}
            elif errors:
                status["note"] = " | ".join(errors)
            out["onnx"][f"{name}_b{b}"] = status
        out["models"][name] = info
    out["peak_rss_mib"] = _maxrss_mib()
    return out


def transformers_version():
    return pkg_version("transformers")


def _load_mobilevit(mobilevit, name, weights):
    """v1: create_model + load_state_dict (as before); v2 and DeepLabv3: from_pretrained(state dict),
    which infers the variant (and the segmentation head) from the tensors."""
    import numpy as np
    sd = dict(np.load(weights))
    if name in MODELS:
        m = mobilevit.create_model(name)
        m.load_state_dict(sd)
    else:
        m = mobilevit.from_pretrained(sd)
        want = name.replace("deeplabv3_", "")
        if m.cfg.name != want or (name in SEG_MODELS) != (m.cfg.head == "deeplabv3"):
            raise RuntimeError(f"from_pretrained built {m.cfg.name} (head {m.cfg.head}), expected {name}")
    return m


def _cpu_snapshot():
    """(wall s, busy CPU-seconds of the whole machine incl. steal, CPU-seconds of this process)."""
    busy = float("nan")
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, ru.ru_utime + ru.ru_stime


def _foreign_cpu(a, b):
    """CPUs' worth of work done by *other* processes (and the hypervisor's steal) while we timed."""
    wall = b[0] - a[0]
    if wall <= 0 or b[1] != b[1]:
        return None
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / wall)


def _time_loop(run, warmup, runs, max_seconds, min_runs):
    for _ in range(warmup):
        run()
    times = []
    t_start = time.perf_counter()
    while len(times) < runs:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_runs and time.perf_counter() - t_start > max_seconds:
            break
    return times


def worker_bench(spec):
    rt, name, b, n = spec["runtime"], spec["model"], spec["batch"], spec["threads"]
    p = _paths(spec["workdir"], name, b)
    import numpy as np
    x = np.load(p["input"])
    ref = np.load(p["ref"])
    res = {"runtime": rt, "model": name, "batch": b, "threads": n}
    ctx = None

    if rt == "mobilevit":
        sys.path.insert(0, ROOT)
        import mobilevit
        res["rss_import_mib"] = _maxrss_mib()
        mobilevit.set_num_threads(n)
        m = _load_mobilevit(mobilevit, name, p["weights"])
        res["version"] = getattr(mobilevit, "__version__", "?")
        res["detail"] = f"isa={mobilevit.get_isa()}, threads={mobilevit.get_num_threads()}, from {os.path.dirname(mobilevit.__file__)}"
        if name not in MODELS:
            res["loader"] = f"from_pretrained -> {m.cfg.name}" + (f", head {m.cfg.head}" if name in SEG_MODELS else "")

        def run():
            return m(x)

    elif rt == "torch":
        import torch
        torch.set_num_threads(n)
        torch.set_num_interop_threads(1)
        hf = name in SEG_MODELS
        if hf:
            import transformers
            res["rss_import_mib"] = _maxrss_mib()
            m = _hf_seg_model(name, torch)
            lib = f"transformers {transformers.__version__}"
        else:
            import timm
            res["rss_import_mib"] = _maxrss_mib()
            m = timm.create_model(name, pretrained=False).eval()
            lib = f"timm {timm.__version__}"
        miss = m.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(p["weights"]).items()}, strict=False)
        bad = [k for k in miss.missing_keys if not k.endswith("num_batches_tracked")] + list(miss.unexpected_keys)
        if bad:
            raise RuntimeError(f"state dict does not fit {lib} {name}: {bad[:5]}")
        xt = torch.from_numpy(x)
        res["version"] = torch.__version__
        res["detail"] = f"{lib}, eager, inference_mode, threads={torch.get_num_threads()}"
        ctx = torch.inference_mode()

        if hf:
            def run():
                return m(pixel_values=xt).logits.numpy()
        else:
            def run():
                return m(xt).numpy()

    elif rt == "onnxruntime":
        import onnxruntime as ort
        res["rss_import_mib"] = _maxrss_mib()
        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(p["onnx"], so, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        res["version"] = ort.__version__
        res["detail"] = f"CPU EP, intra_op={n}, inter_op=1, ORT_ENABLE_ALL, sequential"

        def run():
            return sess.run(None, {iname: x})[0]

    elif rt == "openvino":
        import openvino as ov
        res["rss_import_mib"] = _maxrss_mib()
        core = ov.Core()
        model = core.read_model(p["onnx"])
        cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": n, "NUM_STREAMS": 1,
               "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        cm = core.compile_model(model, "CPU", cfg)
        req = cm.create_infer_request()
        got = {}
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS"):
            try:
                got[key] = str(cm.get_property(key))
            except Exception:  # noqa: BLE001
                got[key] = "?"
        res["version"] = ov.__version__ if hasattr(ov, "__version__") else ov.get_version()
        res["detail"] = "from ONNX; " + ", ".join(f"{k}={v}" for k, v in got.items()) + ", pinning off"
        if got["INFERENCE_PRECISION_HINT"] not in ("f32", "<Type: 'float32'>", "float32"):
            res["warning"] = f"OpenVINO reports INFERENCE_PRECISION_HINT={got['INFERENCE_PRECISION_HINT']}"

        def run():
            req.infer({0: x})
            return req.get_output_tensor(0).data

    else:
        raise ValueError(f"unknown runtime {rt}")

    if ctx is not None:
        ctx.__enter__()
    out = np.array(run(), dtype=np.float32, copy=True)  # first call (also a warm-up)
    if out.shape != ref.shape:
        raise RuntimeError(f"output shape {out.shape} != reference shape {ref.shape}")
    res["max_abs_diff"] = float(np.abs(out - ref).max())
    res["max_abs_logit"] = float(np.abs(ref).max())
    for _ in range(spec["warmup"]):
        run()
    c0 = _cpu_snapshot()
    times = _time_loop(run, 0, spec["runs"], spec["max_seconds"], spec["min_runs"])
    res["foreign_cpu"] = _foreign_cpu(c0, _cpu_snapshot())
    out2 = np.array(run(), dtype=np.float32, copy=True)
    res["max_abs_diff"] = max(res["max_abs_diff"], float(np.abs(out2 - ref).max()))
    res["n"] = len(times)
    res["median_s"] = statistics.median(times)
    res["min_s"] = min(times)
    res["max_s"] = max(times)
    res["peak_rss_mib"] = _maxrss_mib()
    return res


def worker_profile(spec):
    sys.path.insert(0, ROOT)
    import numpy as np
    import mobilevit
    n, name = spec["threads"], spec["model"]
    mobilevit.set_num_threads(n)
    m = _load_mobilevit(mobilevit, name, _paths(spec["workdir"], name, 1)["weights"])
    out = {"model": name, "threads": n, "batches": {}}
    for b, repeats in spec["batches"]:
        x = np.load(_paths(spec["workdir"], name, b)["input"])
        for _ in range(2):
            m(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            m(x)
            times.append(time.perf_counter() - t0)
        fams = m.profile(x, repeats, n)
        out["batches"][str(b)] = {"families": fams, "forward_median_s": statistics.median(times),
                                  "repeats": repeats}
    return out


def worker_main(kind, spec_json):
    spec = json.loads(spec_json)
    fn = {"prep": worker_prep, "bench": worker_bench, "profile": worker_profile}[kind]
    res = fn(spec)
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(res), flush=True)


EXTRA_ENV = {}


def run_worker(kind, spec, threads, timeout):
    """Run one worker in a fresh interpreter; returns (result dict or None, error string)."""
    env = dict(os.environ, **EXTRA_ENV)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):]), ""
    tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
    return None, f"exit code {p.returncode}: {tail[:400]}"


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def machine_info():
    info = {"cpu": "?", "flags": cpu_flags()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_gib"] = int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    info["ncpu"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["kernel"] = platform.release()
    info["python"] = platform.python_version()
    try:
        info["cc"] = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        info["cc"] = "?"
    return info


def pkg_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def fmt_ms(r):
    return f"{r['median_s'] * 1e3:.2f} [{r['min_s'] * 1e3:.2f}–{r['max_s'] * 1e3:.2f}]"


def write_report(path, S):
    args, info = S["args"], S["machine"]
    res = S["results"]  # key (rt, model, batch, threads) -> dict
    rts = args.runtimes
    L = []
    w = L.append
    w("# MobileViT CPU inference: mobilevit vs PyTorch, ONNX Runtime, OpenVINO\n")
    w(f"Generated by `python benchmarks/bench_compare.py {' '.join(S['argv'])}`".rstrip() + f" on {S['date']}"
      f" (run took {S['elapsed_min']:.1f} min).\n")
    if args.quick:
        w("> **Quick run (`--quick`)**: very few timed runs, numbers are a smoke test only, not a result.\n")
    w("## Machine and software\n")
    fl = info["flags"]
    isa = ", ".join(f for f in ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "avx2", "fma")
                    if f in fl)
    w(f"- CPU: {info['cpu']}, {info['ncpu']} logical CPUs usable, {info.get('mem_gib', 0):.1f} GiB RAM")
    w(f"- ISA flags: {isa or 'none of AVX-512/AVX2'} (AVX-512: {'yes' if 'avx512f' in fl else 'no'}, "
      f"AVX2: {'yes' if 'avx2' in fl else 'no'})")
    w(f"- Linux {info['kernel']}, Python {info['python']}, {info['cc']}")
    if EXTRA_ENV:
        w("- Extra worker environment (`--env`): " + ", ".join(f"`{k}={v}`" for k, v in EXTRA_ENV.items()))
    w(f"- Load average (1/5/15 min) before: {S['load_before']}, after: {S['load_after']}")
    fc = sorted(r["foreign_cpu"] for r in res.values() if r.get("foreign_cpu") is not None)
    if fc:
        w(f"- CPU used by other processes (incl. hypervisor steal) while a measurement was timed, from "
          f"/proc/stat: median {statistics.median(fc):.2f}, max {fc[-1]:.2f} CPUs; "
          f"{sum(f > BUSY for f in fc)} of {len(fc)} measurements above {BUSY} CPU are marked † below")
        if fc[-1] > BUSY:
            w("- **Warning: the machine was not idle during this run.** Other jobs preempt the workers; "
              "2-thread results suffer most (a descheduled thread stalls every barrier). Re-run on a quiet machine.")
    mv = next((r for r in res.values() if r.get("runtime") == "mobilevit" and "detail" in r), None)
    ver = S["versions"]
    w(f"- mobilevit {mv['version'] if mv else '?'} ({mv['detail'] if mv else 'not run'})")
    for k in ("torch", "timm") + (("transformers",) if any(m in SEG_MODELS for m in args.models) else ()) \
            + ("onnxruntime", "openvino", "onnx", "numpy"):
        w(f"- {k} {ver.get(k, '?')}")
    w("")
    w("Method: same random weights everywhere (timm init, BatchNorm stats/affine randomised), input "
      f"{IMG}×{IMG} NCHW float32, fp32 everywhere (OpenVINO with `INFERENCE_PRECISION_HINT=f32`). Each "
      "(runtime, model, batch, threads) is a fresh subprocess, run one after another; threads set explicitly "
      "(`mobilevit.set_num_threads`, `torch.set_num_threads` + `set_num_interop_threads(1)`, ORT "
      "`intra_op_num_threads=n, inter_op=1, ORT_ENABLE_ALL`, OpenVINO `INFERENCE_NUM_THREADS=n, NUM_STREAMS=1, "
      "PERFORMANCE_HINT=LATENCY`, pinning off) and `OMP_NUM_THREADS=n`. "
      f"Warm-up {S['warmup'][1]} (batch 1) / {S['warmup'][16]} (batch > 1), then up to {args.runs} timed runs at "
      f"batch 1 and up to {args.runs_batch} at larger batches (stopping after {args.max_seconds:.0f} s once "
      f"{S['min_runs']} are done). Only the inference call is timed (mobilevit's includes its NCHW→NHWC "
      "input conversion). Times: median [min–max]. ONNX Runtime and OpenVINO run the ONNX file exported "
      "by `torch.onnx.export` (" + S.get("exporter", "?") + ", opset 17, static shape per batch size).\n")
    ext = [m for m in args.models if m not in MODELS]
    if ext:
        txt = ("Extended models: the timm models are built as above; mobilevit loads every non-v1 model with "
               "`mobilevit.from_pretrained(state_dict)` (variant and head inferred from the tensors).")
        if any(m in SEG_MODELS for m in ext):
            txt += (" DeepLabv3: `transformers.MobileViTForSemanticSegmentation(MobileViTConfig(num_labels="
                    f"{SEG_CLASSES}, output_stride=16, ...))` (XXS: hidden_sizes [64, 80, 96], expand 2.0; S: "
                    "[144, 192, 240], expand 4.0), re-initialised the way timm initialises (HF's default init "
                    "gives denormal ~1e-44 logits), BatchNorm randomised, input "
                    f"{SEG_IMG}×{SEG_IMG}, batch 1 and {args.seg_batch} (instead of the larger classification "
                    "batches); the logits are [B, 21, 32, 32] everywhere (HF `.logits`; the ONNX export wraps "
                    "the model to return `.logits`).")
        w(txt + "\n")

    # ---- skipped / failed
    notes = S["notes"]
    if notes:
        w("## Skipped or failed\n")
        for n_ in notes:
            w(f"- {n_}")
        w("")

    def cell(rt, model, b, n, f, mark=True):
        r = res.get((rt, model, b, n))
        if r is None:
            return "—"
        if "error" in r:
            return "failed"
        busy = mark and r.get("foreign_cpu") is not None and r["foreign_cpu"] > BUSY
        return f(r) + (" †" if busy else "")

    threads = args.threads
    prep_models = S["prep"].get("models", {})
    peaks = {p["threads"]: p["gflops"] for p in S["fma"] if "gflops" in p}
    flagged, warn = [], []

    def macs_of(m):
        """MACs per image for the GFLOP/s column: counted in prep; analytic v1 figure if counting failed."""
        v = prep_models.get(m, {}).get("macs")
        return v if v else MACS.get(m)

    groups = [(key, title, [m for m in gm if m in args.models]) for key, title, gm in GROUPS]
    groups = [g for g in groups if g[2]]
    only_v1 = [g[0] for g in groups] == ["v1"]

    for gkey, gtitle, models in groups:
        # with only the v1 models the headings are the same as before the extended models existed;
        # otherwise one "## group" section per model group with "###" tables
        h = "##" if only_v1 else "###"
        if not only_v1:
            w(f"## {gtitle}\n")
        hdr = "| model | threads | " + " | ".join(LABEL[r] for r in rts) + " |"
        sep = "|---|---:|" + "---:|" * len(rts)
        gbatches = sorted({b for m in models for b in args.model_batches[m]})
        for b in gbatches:
            if b == 1:
                w(f"{h} Latency, batch 1 (ms per image; median [min–max])\n")
                f = fmt_ms
            else:
                w(f"{h} Throughput, batch {b} (images/s from the median; median ms per batch in brackets)\n")
                f = (lambda bb: (lambda r: f"{bb / r['median_s']:.1f} ({r['median_s'] * 1e3:.1f} ms)"))(b)
            w(hdr)
            w(sep)
            for m in models:
                for n in threads:
                    w(f"| {SHORT[m]} | {n} | " + " | ".join(cell(rt, m, b, n, f) for rt in rts) + " |")
            w("")
            w(f"† = other processes used more than {BUSY} CPU while this was timed (noisy).\n")
            # speed-up of ours vs the best peer
            if "mobilevit" in rts and len(rts) > 1:
                rows = []
                for m in models:
                    for n in threads:
                        ours = res.get(("mobilevit", m, b, n))
                        peers = [(res[(rt, m, b, n)]["median_s"], rt) for rt in rts if rt != "mobilevit"
                                 and "median_s" in res.get((rt, m, b, n), {})]
                        if ours and "median_s" in ours and peers:
                            best, brt = min(peers)
                            rows.append(f"{SHORT[m]}/{n}t: {best / ours['median_s']:.2f}× vs {LABEL[brt]}")
                if rows:
                    w("Speed-up of mobilevit over the fastest peer (median): " + "; ".join(rows) + ".\n")

        # ---- compute efficiency
        w(f"{h} Compute efficiency (GFLOP/s from the median; % of the measured FMA peak for that thread count)\n")
        counted = [m for m in models if prep_models.get(m, {}).get("macs")]
        img = img_size(models[0])
        w(f"FLOPs = 2 × MACs per {img}×{img} image × batch. MACs counted with "
          "`torch.utils.flop_counter.FlopCounterMode` on one batch-1 forward of the exported PyTorch model "
          "(convolutions, linear layers and matmuls incl. attention; norms, activations, softmax and resizing not "
          "counted): " + ", ".join(f"{SHORT[m]} {macs_of(m) / 1e9:.3f} G" + ("" if m in counted else " (analytic)")
                                    for m in models if macs_of(m)) + ".")
        xcheck = [f"{SHORT[m]} {MACS[m] / 1e9:.3f} G ({100 * (prep_models[m]['macs'] / MACS[m] - 1):+.1f} %)"
                  for m in counted if m in MACS]
        if xcheck:
            w("Analytic MACs for comparison (perf-anchors §1, counted vs analytic): " + ", ".join(xcheck) + ".")
        if gkey == "v2":
            w("MobileViTv2's separable self-attention is 1×1 convolutions plus elementwise products and a "
              "reduction over the patches, so its count is convolutions (+ the classifier) only.")
        w("")
        w("| model | batch | threads | " + " | ".join(LABEL[r] for r in rts) + " |")
        w("|---|---:|---:|" + "---:|" * len(rts))

        def eff(m, b, n):
            def fmt_eff(rec):
                gf = 2 * macs_of(m) * b / rec["median_s"] / 1e9
                pk = peaks.get(n)
                return f"{gf:.0f}" + (f" ({100 * gf / pk:.0f} %)" if pk else "")
            return fmt_eff
        for b in gbatches:
            for m in models:
                if b not in args.model_batches[m] or not macs_of(m):
                    continue
                for n in threads:
                    w(f"| {SHORT[m]} | {b} | {n} | " + " | ".join(cell(rt, m, b, n, eff(m, b, n)) for rt in rts) + " |")
        w("")

        # ---- memory
        w(f"{h} Peak RSS (MiB; whole subprocess, `ru_maxrss`; in brackets: growth after importing the runtime)\n")
        w("Includes the Python interpreter, numpy, the runtime's libraries, model conversion/compilation and "
          "the input/output arrays. PyTorch's figure includes " + ("transformers" if gkey == "seg" else "timm")
          + " and torch itself.\n")
        w("| model | batch | threads | " + " | ".join(LABEL[r] for r in rts) + " |")
        w("|---|---:|---:|" + "---:|" * len(rts))
        for b in gbatches:
            for m in models:
                if b not in args.model_batches[m]:
                    continue
                for n in threads:
                    w(f"| {SHORT[m]} | {b} | {n} | " + " | ".join(
                        cell(rt, m, b, n, lambda r: f"{r['peak_rss_mib']:.0f} (+{r['peak_rss_mib'] - r.get('rss_import_mib', 0):.0f})",
                             mark=False)
                        for rt in rts) + " |")
        w("")

        # ---- accuracy
        w(f"{h} Accuracy vs PyTorch (max abs logit difference, worst over thread counts; ⚠ = above {TOL:g})\n")
        if gkey == "seg":
            w("Reference: transformers `MobileViTForSemanticSegmentation` eager, `.logits` "
              f"[B, {SEG_CLASSES}, {SEG_IMG // 16}, {SEG_IMG // 16}], on the same weights and input, computed once in "
              "the prep step.\n")
        else:
            w("Reference: timm eager (SDPA attention) on the same weights and input, computed once in the prep step.\n")
        w("| model | batch | max abs logit | " + " | ".join(LABEL[r] for r in rts) + " |")
        w("|---|---:|---:|" + "---:|" * len(rts))
        gflagged = []
        for b in gbatches:
            for m in models:
                if b not in args.model_batches[m]:
                    continue
                mal = prep_models.get(m, {}).get(f"max_abs_logit_b{b}")
                cells = []
                for rt in rts:
                    ds = [res[(rt, m, b, n)]["max_abs_diff"] for n in threads
                          if "max_abs_diff" in res.get((rt, m, b, n), {})]
                    if not ds:
                        cells.append("—")
                        continue
                    d = max(ds)
                    if d > TOL:
                        gflagged.append(f"{LABEL[rt]} {SHORT[m]} batch {b}: {d:.2e}")
                    cells.append(f"{d:.1e}" + (" ⚠" if d > TOL else ""))
                w(f"| {SHORT[m]} | {b} | {mal:.3g} | " if mal is not None else f"| {SHORT[m]} | {b} | ? | ")
                L[-1] += " | ".join(cells) + " |"
        w("")
        if gflagged:
            w("**Above tolerance:** " + "; ".join(gflagged) + ".\n")
        gwarn = [f"{LABEL[r['runtime']]} {SHORT[r['model']]} b{r['batch']} {r['threads']}t: {r['warning']}"
                 for r in res.values() if r.get("warning") and r.get("model") in models]
        if gwarn:
            w("**Warnings:** " + "; ".join(gwarn) + ".\n")
        flagged += gflagged
        warn += gwarn

    # ---- FMA peak
    w("## fp32 FMA peak of this machine (`benchmarks/fma_peak.c`)\n")
    w("12 independent FMA chains in vector registers per thread, threads pinned one per core "
      "(`OMP_PROC_BIND=close`), best of the repetitions. The FMA floor is GFLOP / peak.\n")
    fm = [m for m in args.models if macs_of(m)] if not only_v1 else MODELS
    w(f"| threads | ISA | GFLOP/s | FMA floor {' / '.join(SHORT[m] for m in fm)}, batch 1 (ms) |")
    w("|---:|---|---:|---|")
    for p in S["fma"]:
        if "gflops" in p:
            fl_ = " / ".join(f"{2 * (macs_of(m) or MACS[m]) / (p['gflops'] * 1e9) * 1e3:.2f}" for m in fm)
            w(f"| {p['threads']} | {p['isa']} | {p['gflops']:.1f} | {fl_} |")
        else:
            w(f"| {p['threads']} | — | failed: {p.get('error', '?')} | |")
    w("")
    pk = {p["threads"]: p["gflops"] for p in S["fma"] if "gflops" in p}
    if 1 in pk and 2 in pk and pk[2] < 1.6 * pk[1]:
        w(f"**Suspicious:** 2 threads reach only {pk[2] / pk[1]:.2f}× the 1-thread peak (expected ~1.9–2× on two "
          "physical cores), so another job was probably running; the % of peak figures above are inflated.\n")

    # ---- op breakdown
    prof = S.get("profile")
    if prof:
        w(f"## mobilevit op-family breakdown ({SHORT[prof['model']]}, {prof['threads']} threads, "
          "`MobileViT.profile`, median per family)\n")
        bs = list(prof["batches"])
        fams = []
        for b in bs:
            for k in prof["batches"][b]["families"]:
                if k not in fams:
                    fams.append(k)
        w("| op family | " + " | ".join(f"batch {b}: ms | % " for b in bs) + "|")
        w("|---|" + "---:|---:|" * len(bs))
        tot = {b: sum(prof["batches"][b]["families"].values()) for b in bs}
        for k in fams:
            cells = []
            for b in bs:
                v = prof["batches"][b]["families"].get(k, 0.0)
                cells.append(f"{v * 1e3:.3f} | {100 * v / tot[b]:.1f}" if tot[b] else "— | —")
            w(f"| {k} | " + " | ".join(cells) + " |")
        w("| **sum** | " + " | ".join(f"**{tot[b] * 1e3:.2f}** | 100" for b in bs) + " |")
        w("| forward() median, unprofiled | " + " | ".join(
            f"{prof['batches'][b]['forward_median_s'] * 1e3:.2f} | " for b in bs) + " |")
        w("")
    elif S.get("profile_error"):
        w(f"## mobilevit op-family breakdown\n\nfailed: {S['profile_error']}\n")

    # ---- ONNX export details
    w("## ONNX export\n")
    for k, v in S["prep"].get("onnx", {}).items():
        if v.get("ok"):
            w(f"- {k}: {v['exporter']}, opset {v['opset']}, {v['bytes'] / 1e6:.1f} MB, {v['seconds']} s"
              + (f" (first attempt failed: {v['note']})" if v.get("note") else ""))
        else:
            w(f"- {k}: **failed**: {v.get('error')}")
    diffs = [f"{SHORT[m]} b{k.split('_b')[-1]}: {v:.1e}" for m, info_ in S["prep"].get("models", {}).items()
             for k, v in info_.items() if k.startswith("exportable_vs_sdpa")]
    if diffs:
        w("- exported (`exportable=True`, no SDPA) vs reference (SDPA) timm model, max abs logit diff: "
          + ", ".join(diffs))
    w("")
    w("Caveats: this is a shared, noisy 2-vCPU VM; compare medians, and treat differences below ~10 % as "
      "noise. The chart is `benchmarks/results.png`.\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


def write_chart(path, S):
    """One row of panels per model group (v1, v2, DeepLabv3): batch-1 latency and throughput at the
    larger batch, at 2 threads (or the largest thread count measured)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args, res = S["args"], S["results"]
    n = 2 if 2 in args.threads else max(args.threads)
    rts = args.runtimes
    groups = [(key, title, [m for m in gm if m in args.models]) for key, title, gm in GROUPS]
    groups = [g for g in groups if g[2]]
    rows = []
    for key, _title, models in groups:
        gb = sorted({b for m in models for b in args.model_batches[m]})
        rows.append((key, models, gb))
    ncols = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(6.5 * ncols, 4.6 * len(rows)), squeeze=False)
    width = 0.8 / max(1, len(rts))
    colors = {"mobilevit": "#d62728", "torch": "#1f77b4", "onnxruntime": "#2ca02c", "openvino": "#9467bd"}
    single = len(rows) == 1 and rows[0][0] == "v1"
    for axrow, (key, models, gb) in zip(axes, rows):
        for ax in axrow[len(gb):]:
            ax.axis("off")
        for ax, b in zip(axrow, gb):
            title = ("latency, batch 1 (ms, lower is better)" if b == 1 else
                     f"throughput, batch {b} (images/s, higher is better)")
            for i, rt in enumerate(rts):
                xs, ys = [], []
                for j, m in enumerate(models):
                    r = res.get((rt, m, b, n), {})
                    if "median_s" not in r:
                        continue
                    xs.append(j + (i - (len(rts) - 1) / 2) * width)
                    ys.append(r["median_s"] * 1e3 if b == 1 else b / r["median_s"])
                bars = ax.bar(xs, ys, width, label=LABEL[rt], color=colors.get(rt))
                ax.bar_label(bars, fmt="%.1f" if b == 1 else ("%.0f" if key != "seg" else "%.1f"), fontsize=7)
            ax.set_xticks(range(len(models)))
            ax.set_xticklabels([DISPLAY[m] for m in models], fontsize=8 if key == "seg" else None)
            ax.set_title(f"{title}, {n} threads" if single else f"{CHART_TITLE[key]}\n{title}, {n} threads",
                         fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
    what = f"MobileViT {IMG}×{IMG}" if single else "MobileViT family"
    fig.suptitle(f"{what} fp32 on {S['machine']['cpu']} ({S['date']}"
                 + (", --quick" if args.quick else "") + ")", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=ALL_MODELS + list(MODEL_SETS),
                    metavar="MODEL",
                    help="model keys (" + ", ".join(ALL_MODELS) + ") or sets: v1 (the default: "
                         "mobilevit_xxs/xs/s), v2, seg, extended (v2 + seg), all")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16],
                    help="batch sizes for the classification models (default 1 16); the DeepLabv3 "
                         "models run batch 1 and --seg-batch instead of every batch > 1")
    ap.add_argument("--seg-batch", type=int, default=4,
                    help="throughput batch of the 512x512 segmentation models (default 4)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runtimes", nargs="+", default=RUNTIMES, choices=RUNTIMES)
    ap.add_argument("--runs", type=int, default=200, help="timed runs at batch 1 (default 200)")
    ap.add_argument("--runs-batch", type=int, default=30, help="timed runs at batch > 1 (default 30)")
    ap.add_argument("--min-runs", type=int, default=10, help="never fewer timed runs than this")
    ap.add_argument("--max-seconds", type=float, default=45.0,
                    help="stop timing a measurement after this long once --min-runs are done")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 runs (3 at batch > 1), 2 warm-ups")
    ap.add_argument("--no-profile", action="store_true", help="skip the mobilevit op breakdown")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--png", default=None, help="chart path (default: results.png next to --out)")
    ap.add_argument("--json", default=None, help="also dump all raw results to this JSON file")
    ap.add_argument("--workdir", default=None, help="keep weights / inputs / ONNX files here (default: temp dir, deleted)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment variable for every worker, e.g. OMP_WAIT_POLICY=passive (repeatable)")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.runs, a.runs_batch, a.min_runs = min(a.runs, 5), min(a.runs_batch, 3), 3
    a.batches = sorted(set(a.batches))
    a.threads = sorted(set(a.threads))
    chosen = {k for m in a.models for k in MODEL_SETS.get(m, [m])}
    a.models = [m for m in ALL_MODELS if m in chosen]
    a.model_batches = {m: model_batches(m, a.batches, a.seg_batch) for m in a.models}
    a.runtimes = [r for r in RUNTIMES if r in a.runtimes]
    if a.png is None:
        a.png = os.path.join(os.path.dirname(os.path.abspath(a.out)), "results.png")
    return a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)

    for kv in args.env:
        k, _, v = kv.partition("=")
        EXTRA_ENV[k] = v
    t_start = time.time()
    S = {"args": args, "argv": argv, "notes": [], "results": {}, "machine": machine_info(),
         "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "load_before": loadavg()}
    S["versions"] = {k: pkg_version(k) for k in ("torch", "timm", "transformers", "onnxruntime", "openvino", "onnx",
                                                 "numpy", "matplotlib")}
    S["warmup"] = {1: 2 if args.quick else 20, 16: 1 if args.quick else 3}
    S["min_runs"] = args.min_runs
    workdir = args.workdir or tempfile.mkdtemp(prefix="mobilevit_bench_")
    os.makedirs(workdir, exist_ok=True)

    def log(msg):
        print(f"[{(time.time() - t_start) / 60:5.1f} min] {msg}", flush=True)

    try:
        # 1. FMA peak
        S["fma"] = []
        exe, isa = build_fma_peak(workdir)
        if exe is None:
            S["notes"].append(f"FMA peak: could not build fma_peak.c ({isa}); no % of peak reported")
        else:
            for n in sorted(set(args.threads) | {1, 2}):
                if n > S["machine"]["ncpu"]:
                    continue
                try:
                    reps, iters = (2, 30_000_000) if args.quick else (7, 100_000_000)
                    S["fma"].append(run_fma_peak(exe, n, reps, iters))
                except Exception as e:  # noqa: BLE001
                    S["fma"].append({"threads": n, "error": str(e)[:200]})
                log(f"FMA peak {n} thread(s): {S['fma'][-1]}")

        # 2. prep: weights, inputs, references, ONNX
        log("prep: timm models, reference logits, ONNX export ...")
        prep, err = run_worker("prep", {"workdir": workdir, "models": args.models, "batches": args.batches,
                                        "model_batches": args.model_batches,
                                        "threads": max(args.threads)}, max(args.threads), timeout=1800)
        if prep is None:
            raise SystemExit(f"prep step failed ({err}); nothing can be measured")
        S["prep"] = prep
        exporters = sorted({v["exporter"] for v in prep["onnx"].values() if v.get("ok")})
        S["exporter"] = ", ".join(exporters) or "no successful export"
        for k, v in prep["onnx"].items():
            if not v.get("ok"):
                S["notes"].append(f"ONNX export of {k} failed, ONNX Runtime and OpenVINO skipped for it: {v['error']}")
        log(f"prep done ({prep['peak_rss_mib']:.0f} MiB peak)")

        # which runtimes are importable at all (checked without importing them here)
        available = {}
        for rt, mod in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
            available[rt] = pkg_version(mod if rt != "torch" else "torch") != "not installed"
        available["mobilevit"] = True
        for rt in args.runtimes:
            if not available[rt]:
                S["notes"].append(f"{LABEL[rt]}: package not installed, skipped (`pip install {rt}`)")
        for m, info_ in prep["models"].items():
            if info_.get("macs_error"):
                S["notes"].append(f"FLOP count of {m} failed ({info_['macs_error']})"
                                  + ("; the analytic MACs are used" if m in MACS else "; no GFLOP/s for it"))

        # 3. measurements: one subprocess each, sequential (segmentation models: --seg-batch for b > 1)
        for i, b0 in enumerate(args.batches):
            for m in args.models:
                b = model_batch(m, b0, args.seg_batch)
                if any(model_batch(m, bp, args.seg_batch) == b for bp in args.batches[:i]):
                    continue  # this segmentation batch was already measured
                onnx_ok = prep["onnx"].get(f"{m}_b{b}", {}).get("ok", False)
                for n in args.threads:
                    for rt in args.runtimes:
                        if not available[rt] or (rt in ("onnxruntime", "openvino") and not onnx_ok):
                            continue
                        spec = {"runtime": rt, "model": m, "batch": b, "threads": n, "workdir": workdir,
                                "runs": args.runs if b == 1 else args.runs_batch,
                                "warmup": S["warmup"][1] if b == 1 else S["warmup"][16],
                                "min_runs": args.min_runs, "max_seconds": args.max_seconds}
                        r, err = run_worker("bench", spec, n, timeout=900)
                        if r is None:
                            r = {"runtime": rt, "model": m, "batch": b, "threads": n, "error": err}
                            S["notes"].append(f"{LABEL[rt]} {SHORT[m]} batch {b} {n} thread(s) failed: {err}")
                            log(f"{rt:12s} {SHORT[m]:6s} b{b:<3d} {n}t  FAILED: {err}")
                        else:
                            log(f"{rt:12s} {SHORT[m]:6s} b{b:<3d} {n}t  median {r['median_s'] * 1e3:8.2f} ms "
                                f"(n={r['n']}) rss {r['peak_rss_mib']:.0f} MiB  diff {r['max_abs_diff']:.1e}  "
                                f"others {r.get('foreign_cpu') or 0:.2f} CPU")
                        S["results"][(rt, m, b, n)] = r

        # 4. op-family breakdown (mobilevit S, 2 threads)
        if not args.no_profile and "mobilevit" in args.runtimes:
            pm = "mobilevit_s" if "mobilevit_s" in args.models else args.models[-1]
            pn = 2 if 2 in args.threads else max(args.threads)
            pb = [(b, (3 if args.quick else 50) if b == 1 else (2 if args.quick else 10))
                  for b in args.model_batches[pm]]
            log(f"profile {pm} {pn} threads ...")
            prof, err = run_worker("profile", {"workdir": workdir, "model": pm, "threads": pn, "batches": pb},
                                   pn, timeout=900)
            S["profile"], S["profile_error"] = prof, err
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    S["load_after"] = loadavg()
    S["elapsed_min"] = (time.time() - t_start) / 60
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    write_report(args.out, S)
    log(f"wrote {args.out}")
    try:
        write_chart(args.png, S)
        log(f"wrote {args.png}")
    except Exception as e:  # noqa: BLE001
        log(f"chart failed: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {**S["machine"], "flags": sorted(S["machine"]["flags"])},
                       "versions": S["versions"], "fma": S["fma"], "prep": S["prep"],
                       "profile": S.get("profile"), "notes": S["notes"],
                       "results": [v for v in S["results"].values()]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
