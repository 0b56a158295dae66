#!/usr/bin/env python
"""Compare mobilevit with PyTorch eager (timm), ONNX Runtime and OpenVINO on the CPU.

    python benchmarks/bench_compare.py --quick --out /tmp/quick.md                       # smoke test, 1 pass
    python benchmarks/bench_compare.py --out benchmarks/RESULTS.md --section avx512      # this machine's best ISA
    python benchmarks/bench_compare.py --isa avx2 --peer-isa-cap avx2 \
        --out benchmarks/RESULTS.md --section avx2                                     # AVX2 path, forced
    python benchmarks/bench_compare.py --models mobilevit_s --batches 1 --threads 2 --passes 5
    python benchmarks/bench_compare.py --models all         # v1 + MobileViTv2 + DeepLabv3 (long, see README)

Expected duration on 2 idle cores (default: v1 + MobileNetV2, batch 1 and 16, 1 and 2 threads, 4 runtimes,
3 passes of up to 100 / 15 timed calls capped at 20 s per measurement): ~7 min per pass (about 3 of them
subprocess start-up, PyTorch eager at batch 16 most of the rest), ~23-25 min in all with the FMA peak,
prep (ONNX export) and profile; `--runtimes mobilevit onnxruntime openvino` takes ~15 min; `--quick`
(1 pass, 5 / 3 calls) 4-5 min, twice that on a busy machine.  On aarch64 the same command runs (NEON FMA
peak; ours reports its ISA; a runtime that is not installed is skipped with a note); timings under
emulation (qemu-user) mean nothing and are never to be reported.

ISA paths: ``--isa avx2|avx512|neon|ref|auto`` forces ours (``MOBILEVIT_ISA`` in its workers' environment,
plus ``set_isa`` and a check of ``get_isa()`` in the worker); the FMA peak is measured for that ISA.
``--peer-isa-cap avx2`` limits the peers where they allow it: PyTorch (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``), OpenVINO (``ONEDNN_MAX_CPU_ISA=AVX2``:
honoured by its oneDNN convolutions / GEMMs and JIT subgraphs, not by its MVN / Reduce JIT kernels nor its
MLAS GEMM, which dispatch on CPUID); ONNX Runtime has no switch (MLAS picks its kernels from CPUID).
Before measuring, one small worker per runtime records what it ran (``get_isa()``,
``torch.backends.cpu.get_cpu_capability()``, oneDNN's ``ONEDNN_VERBOSE=profile_create`` lines, OpenVINO's
execution-graph ``primitiveType`` per node); the report's ISA table says for each runtime whether the
cap was verified, partial or impossible.

Passes: ``--passes N`` (default 3) runs every (runtime, model, batch, threads) once per pass, each in its
own subprocess, the runtimes of a cell in an order rotated by one per pass; a table cell is the median
of the pass medians [lowest-highest pass median].  ``--section NAME`` replaces only that section of
``--out`` (between ``<!-- bench_compare section NAME -->`` markers) and keeps the rest of the file.

Models: the default set is MobileViT v1 (mobilevit_xxs/xs/s, timm, 256x256, batch 1 and 16) plus the
reference CNN torchvision mobilenet_v2 (random weights, BatchNorm randomised, 256x256 like MobileViT;
peers only) for the "MobileViT-XS (ours) / MobileNetV2 (fastest peer)" ratio.
``--models`` also takes mobilevitv2_050 / mobilevitv2_100 (timm, 256x256) and
deeplabv3_mobilevit_xxs / deeplabv3_mobilevit_s (transformers MobileViTForSemanticSegmentation,
21 classes, output stride 16, 512x512, batch 1 and ``--seg-batch`` (4) instead of 16), or the sets
v1, v2, seg, extended (v2 + seg), all.  mobilevit loads v1 with create_model + load_state_dict and
everything else with ``mobilevit.from_pretrained(state_dict)``.

What it does, in order:

1. Builds ``benchmarks/fma_peak.c`` with the system ``cc`` (the ISA of ``--isa``, else the best of
   AVX-512, AVX2, NEON) and measures the fp32 FMA peak for each thread count (best of several
   repetitions).
2. One "prep" subprocess builds each timm / transformers model with fixed random weights
   (BatchNorm statistics and affine parameters randomised too, so folding bugs would show), saves
   the state dict as ``.npz``, a fixed random input per (image size, batch), the PyTorch reference
   logits, counts the MACs of one batch-1 forward with ``torch.utils.flop_counter.FlopCounterMode``,
   and writes a static-shape ONNX file per (model, batch) via ``torch.onnx.export(dynamo=False,
   opset 17)`` from the ``exportable=True`` timm model (no SDPA) or the transformers model wrapped
   to return ``.logits``.  The exported graph is checked by every ONNX based runtime against the
   same PyTorch logits.
3. The ISA probe: one batch-1 inference per runtime in its benchmark environment (see above).
4. Every (runtime, model, batch, threads) measurement, once per pass, runs in its own fresh subprocess, one after
   another (never concurrently), with the thread count set explicitly for that runtime and
   ``OMP_NUM_THREADS`` set before any import.  Warm-up, then timed runs of the inference call
   only; the worker reports median / min / max, the process's peak RSS (``ru_maxrss``, plus the
   RSS right after importing the runtime), and the max abs difference of its logits vs PyTorch.
   Around every measurement with two or more threads, ``benchmarks/core_rtt.c`` (built with the
   system ``cc``) times a cache-line round trip between the first two CPUs: on VMs whose vCPUs the
   hypervisor sometimes places on different dies (round trip ~300 ns instead of ~50-80 ns on
   AMD Zen 4) multi-thread speed follows that placement, so such cells are marked ‡.
5. One subprocess runs ``MobileViT.profile`` for mobilevit_s (else the last selected model) at
   2 threads (per-op-family time).
6. Writes the Markdown report (``--out``, or its ``--section``) with the issue-17 target table
   (PASS / FAIL computed from the medians; when some passes ran cross-die, also from the same-die
   passes alone) and a PNG chart (``--png``, default results.png or
   results_<section>.png); with models from more than one family (v1 / v2 / DeepLabv3) each family
   gets its own section of tables and its own row of chart panels.

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
import signal
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
# reference CNN (issue 17): torchvision MobileNetV2 at the same 256x256 input, peers only (not ours)
REF_MODELS = ["mobilenet_v2"]
ALL_MODELS = MODELS + REF_MODELS + V2_MODELS + SEG_MODELS
OURS_MODELS = MODELS + V2_MODELS + SEG_MODELS  # what mobilevit runs
DEFAULT_MODELS = MODELS + REF_MODELS
# names accepted by --models besides the model keys
MODEL_SETS = {"v1": MODELS, "ref": REF_MODELS, "v2": V2_MODELS, "seg": SEG_MODELS,
              "extended": V2_MODELS + SEG_MODELS, "all": ALL_MODELS}
SHORT = {"mobilevit_xxs": "XXS", "mobilevit_xs": "XS", "mobilevit_s": "S", "mobilenet_v2": "MNv2 (ref)",
         "mobilevitv2_050": "v2-0.5", "mobilevitv2_100": "v2-1.0",
         "deeplabv3_mobilevit_xxs": "DL-XXS", "deeplabv3_mobilevit_s": "DL-S"}
DISPLAY = {"mobilevit_xxs": "MobileViT-XXS", "mobilevit_xs": "MobileViT-XS", "mobilevit_s": "MobileViT-S",
           "mobilenet_v2": "MobileNetV2 (ref)",
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
GROUPS = [("v1", "MobileViT v1 classification, 256×256", MODELS + REF_MODELS),
          ("v2", "MobileViTv2 classification (timm), 256×256", V2_MODELS),
          ("seg", (f"DeepLabv3-MobileViT segmentation (HF transformers, {SEG_CLASSES} classes, output stride 16), "
                   "512×512"), SEG_MODELS)]
# analytic multiply-accumulates per 256x256 image, incl. the attention matmuls
# (see /work/shared/reference/perf-anchors.md section 1); only a cross-check now: the GFLOP/s
# column uses the MACs counted with torch.utils.flop_counter in the prep step for every model
MACS = {"mobilevit_xxs": 0.407e9, "mobilevit_xs": 1.026e9, "mobilevit_s": 2.001e9}
RUNTIMES = ["mobilevit", "torch", "onnxruntime", "openvino"]
PEERS = ["onnxruntime", "openvino"]  # "the fastest peer" of the issue-17 targets
ISAS = ["auto", "avx512", "avx2", "neon", "ref"]
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
SPLIT_NS = 150.0  # cache-line round trip (core_rtt.c) above which the two CPUs count as on different dies
RESULT_TAG = "@@RESULT@@ "


# --------------------------------------------------------------------------------------------
# FMA peak microbenchmark (benchmarks/fma_peak.c)
# --------------------------------------------------------------------------------------------

def arch():
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def is_x86():
    return arch() in ("x86_64", "i686", "i386")


def cpu_flags():
    """CPU feature flags: /proc/cpuinfo "flags" (x86) or "Features" (aarch64); on macOS the
    hw.optional sysctls that are set (Apple Silicon: neon, fp16, ...)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") or line.startswith("Features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "hw.optional"], capture_output=True, text=True).stdout
            return {k.split(".")[-1].lower() for k, _, v in (ln.partition(":") for ln in out.splitlines())
                    if v.strip() == "1"}
        except OSError:
            pass
    return set()


def vector_isas(flags=None):
    """The FMA vector ISAs this CPU runs, best first (names as in mobilevit.available_isas())."""
    flags = cpu_flags() if flags is None else flags
    if is_x86():
        out = []
        if "avx512f" in flags:
            out.append("avx512")
        if "avx2" in flags and "fma" in flags:
            out.append("avx2")
        return out
    if arch() == "aarch64":
        return ["neon"]  # ASIMD is part of the aarch64 base ISA
    return []


FMA_FLAGS = {"avx512": ["-mavx512f", "-mfma"], "avx2": ["-mavx2", "-mfma"], "neon": [], "scalar": []}


def build_fma_peak(workdir, want=None):
    """Compile fma_peak.c with the system cc for the vector ISA `want` (default: the best one this
    CPU has; AVX-512, AVX2 or NEON, else scalar).  OpenMP via -fopenmp, then Apple clang's
    -Xpreprocessor -fopenmp -lomp, then none (1 thread only).
    Returns (binary path, isa) or (None, reason)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (cc) found"
    have = vector_isas()
    if want and want not in have:
        return None, f"the CPU has no {want} (has: {', '.join(have) or 'no FMA vector ISA'})"
    isas = [want] if want else (have or ["scalar"])
    src = os.path.join(HERE, "fma_peak.c")
    errors = []
    for isa in isas:
        for omp in (["-fopenmp"], ["-Xpreprocessor", "-fopenmp", "-lomp"], []):
            exe = os.path.join(workdir, f"fma_peak_{isa}")
            cmd = [cc, "-O2", *FMA_FLAGS[isa], *omp, src, "-o", exe]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode == 0:
                return exe, isa
            errors.append(f"{' '.join(cmd)}: {p.stderr.strip()[-200:]}")
    return None, "; ".join(errors)


def run_fma_peak(exe, threads, reps=7, iters=100_000_000):
    """Best-of-`reps` fp32 FMA GFLOP/s with `threads` OpenMP threads (pinned, one per core)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="close", OMP_PLACES="cores")
    p = subprocess.run([exe, str(threads), str(reps), str(iters)], capture_output=True, text=True,
                       env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return json.loads(p.stdout.strip().splitlines()[-1])


def build_core_rtt(workdir):
    """Compile core_rtt.c with the system cc; returns (binary path, None) or (None, reason)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (cc) found"
    exe = os.path.join(workdir, "core_rtt")
    p = subprocess.run([cc, "-O2", "-pthread", os.path.join(HERE, "core_rtt.c"), "-o", exe],
                       capture_output=True, text=True)
    return (exe, None) if p.returncode == 0 else (None, p.stderr.strip()[-200:])


def run_core_rtt(exe):
    """Median cache-line round trip (ns) between the first two usable CPUs, or None."""
    try:
        p = subprocess.run([exe, "20000", "5"], capture_output=True, text=True, timeout=60)
        return json.loads(p.stdout.strip().splitlines()[-1])["rtt_ns"] if p.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None


def split_placement(r):
    """True when a core_rtt reading taken around this measurement says the CPUs were on different dies."""
    return any(v is not None and v > SPLIT_NS for v in r.get("core_rtt_ns") or ())


# --------------------------------------------------------------------------------------------
# Workers (run in their own subprocess: `bench_compare.py --worker KIND SPEC_JSON`)
# --------------------------------------------------------------------------------------------

def _maxrss_mib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 ** 2 if sys.platform == "darwin" else 1024.0)  # macOS: bytes, Linux: KiB


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


def _torchvision_model(name, torch):
    """torchvision reference CNN (random weights: torchvision's own init)."""
    import torchvision
    return getattr(torchvision.models, name)(weights=None).eval()


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
        tv = name in REF_MODELS
        if tv:
            ref_model = _torchvision_model(name, torch)
            with torch.no_grad():
                _randomise_bn(ref_model, torch)
            exp_model = fwd = ref_model  # no SDPA: the exported module is the reference
        elif hf:
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
                           else f"torchvision {pkg_version('torchvision')} {name}(weights=None)" if tv
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
                ref_exp = ref if hf or tv else exp_model(x).numpy()
            np.save(p["ref"], ref)
            info[f"max_abs_logit_b{b}"] = float(np.abs(ref).max())
            if not hf and not tv:
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
        mobilevit = _import_mobilevit(spec.get("isa", "auto"))
        res["rss_import_mib"] = _maxrss_mib()
        mobilevit.set_num_threads(n)
        m = _load_mobilevit(mobilevit, name, p["weights"])
        res["version"] = getattr(mobilevit, "__version__", "?")
        res["isa"] = mobilevit.get_isa()
        res["detail"] = f"isa={res['isa']}, threads={mobilevit.get_num_threads()}, from {os.path.dirname(mobilevit.__file__)}"
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
        elif name in REF_MODELS:
            import torchvision
            res["rss_import_mib"] = _maxrss_mib()
            m = _torchvision_model(name, torch)
            lib = f"torchvision {torchvision.__version__}"
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
        res["isa"] = _torch_capability(torch)
        res["detail"] = f"{lib}, eager, inference_mode, threads={torch.get_num_threads()}, ATen cpu capability {res['isa']}"
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
        res["primitives"] = _ov_primitives(cm)
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


def _import_mobilevit(isa):
    """Import mobilevit from this checkout and force its kernel path (MOBILEVIT_ISA is also set in
    the worker's environment by the parent); a path that is not the one asked for is an error."""
    sys.path.insert(0, ROOT)
    import mobilevit
    if isa != "auto":
        mobilevit.set_isa(isa)
        if mobilevit.get_isa() != isa:
            raise RuntimeError(f"asked for isa={isa}, mobilevit runs {mobilevit.get_isa()}")
    return mobilevit


def _torch_capability(torch):
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch
        return "?"


def _ov_primitives(cm):
    """{primitiveType: count} of the compiled OpenVINO model's execution graph (e.g. brgconv_avx2_f32,
    jit_avx512_f32, gemm_mlas_f32), nodes without a kernel (unknown_*) left out; the value of a key
    is also broken down by layer type in '<primitive> <- <layerType>' keys."""
    out = {}
    try:
        for op in cm.get_runtime_model().get_ordered_ops():
            ri = op.get_rt_info()
            if "primitiveType" not in ri:
                continue
            pt = ri["primitiveType"].astype(str)
            if pt.startswith("unknown"):
                continue
            lt = ri["layerType"].astype(str) if "layerType" in ri else "?"
            out[f"{pt} <- {lt}"] = out.get(f"{pt} <- {lt}", 0) + 1
    except Exception as e:  # noqa: BLE001 - report rather than fail the measurement
        out["error: " + str(e)[:100]] = 1
    return out


def worker_isa(spec):
    """One inference of `model` at batch 1 in runtime `rt`, to see which ISA path it takes; the parent
    runs this with ONEDNN_VERBOSE=profile_create and reads oneDNN's 'isa:' line and primitive names from stdout."""
    rt, name = spec["runtime"], spec["model"]
    import numpy as np
    p = _paths(spec["workdir"], name, 1)
    x = np.load(p["input"])
    res = {"runtime": rt}
    if rt == "mobilevit":
        mobilevit = _import_mobilevit(spec.get("isa", "auto"))
        m = _load_mobilevit(mobilevit, name, p["weights"])
        m(x)
        res["isa"] = mobilevit.get_isa()
        res["available"] = list(mobilevit.available_isas())
    elif rt == "torch":
        import torch
        torch.set_num_threads(1)
        m = _torchvision_model(name, torch) if name in REF_MODELS else (
            _hf_seg_model(name, torch) if name in SEG_MODELS else __import__("timm").create_model(name).eval())
        with torch.inference_mode():
            m(torch.from_numpy(x)) if name not in SEG_MODELS else m(pixel_values=torch.from_numpy(x))
        res["isa"] = _torch_capability(torch)
    elif rt == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(p["onnx"], so, providers=["CPUExecutionProvider"])
        sess.run(None, {sess.get_inputs()[0].name: x})
        res["providers"] = sess.get_providers()
    elif rt == "openvino":
        import openvino as ov
        core = ov.Core()
        cm = core.compile_model(core.read_model(p["onnx"]), "CPU",
                                {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
        # compile only: the kernels (primitiveType) are chosen at compile time, and with ONEDNN_VERBOSE=1
        # OpenVINO 2026.4's inference fails ("could not execute a primitive"); the benchmark workers
        # record the same primitive table after compiling without verbose output
        res["primitives"] = _ov_primitives(cm)
        try:
            res["capabilities"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        except Exception:  # noqa: BLE001
            pass
    sys.stdout.flush()
    return res


def worker_profile(spec):
    import numpy as np
    mobilevit = _import_mobilevit(spec.get("isa", "auto"))
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
    fn = {"prep": worker_prep, "bench": worker_bench, "profile": worker_profile, "isa": worker_isa}[kind]
    res = fn(spec)
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(res), flush=True)


EXTRA_ENV = {}


def run_worker(kind, spec, threads, timeout, env_extra=None, want_stdout=False):
    """Run one worker in a fresh interpreter; returns (result dict or None, error string), and the
    worker's stdout too with want_stdout=True.  env_extra: per-runtime variables (ISA choice or cap)."""
    env = dict(os.environ, **EXTRA_ENV)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.update(env_extra or {})
    env.setdefault("PYTHONWARNINGS", "ignore")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return (None, f"timed out after {timeout} s") + (("",) if want_stdout else ())
    res, err = None, ""
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG):])
            break
    if res is None:
        tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        if p.returncode < 0:
            try:
                sig = signal.Signals(-p.returncode).name
            except ValueError:
                sig = str(-p.returncode)
            err = f"crashed ({sig}): {tail[:400]}"
        else:
            err = f"exit code {p.returncode}: {tail[:400]}"
    return (res, err, p.stdout) if want_stdout else (res, err)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def machine_info():
    info = {"cpu": "?", "flags": cpu_flags(), "arch": arch()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if info["cpu"] == "?":  # aarch64 Linux has no "model name" in /proc/cpuinfo; macOS has no /proc
        for cmd, key in ((["lscpu"], "Model name:"), (["sysctl", "-n", "machdep.cpu.brand_string"], "")):
            try:
                out = subprocess.run(cmd, capture_output=True, text=True).stdout
            except OSError:
                continue
            hit = [ln.split(":", 1)[1].strip() if key else ln.strip() for ln in out.splitlines()
                   if ln.startswith(key) and ln.strip()]
            if hit:
                info["cpu"] = hit[0]
                break
    if info["cpu"] == "?":
        info["cpu"] = platform.processor() or info["arch"]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_gib"] = int(line.split()[1]) / 1024 ** 2
    except OSError:
        try:
            info["mem_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
        except (ValueError, OSError, AttributeError):
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
        try:
            return " ".join(f"{v:.2f}" for v in os.getloadavg())
        except (OSError, AttributeError):
            return "?"


# --------------------------------------------------------------------------------------------
# ISA path of every runtime: forcing ours, capping the peers, and checking what they ran
# --------------------------------------------------------------------------------------------

ISA_NAME = {"avx512": "AVX-512", "avx2": "AVX2", "neon": "NEON", "ref": "scalar reference", "scalar": "scalar"}
# what --peer-isa-cap avx2 sets for each peer (ONNX Runtime: nothing exists, see peer_cap_env)
PEER_CAP_ENV = {
    "torch": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "openvino": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "onnxruntime": {},
}


def runtime_env(rt, args):
    """Environment of a runtime's worker processes: our forced kernel path (MOBILEVIT_ISA; the worker
    also calls set_isa and checks get_isa) and, with --peer-isa-cap avx2, the peers' ISA caps."""
    if rt == "mobilevit":
        return {"MOBILEVIT_ISA": args.isa} if args.isa != "auto" else {}
    return dict(PEER_CAP_ENV.get(rt, {})) if args.peer_isa_cap == "avx2" else {}


def isa_of_name(name):
    """ISA named inside a kernel / primitive name (jit_avx2_f32, brgconv:avx512_core, ...), or None."""
    n = name.lower()
    for key, isa in (("amx", "AMX"), ("avx512", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse41", "SSE4.1"),
                     ("sve", "SVE"), ("asimd", "NEON"), ("neon", "NEON"), ("acl", "ACL (Arm Compute Library)"),
                     ("mlas", "MLAS (own CPUID dispatch)"), ("ref", "reference C++")):
        if key in n:
            return isa
    return None


def mlas_isa(flags):
    """The kernels ONNX Runtime's MLAS picks from CPUID at start-up (inferred: ORT reports nothing)."""
    if is_x86():
        if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
            return "AVX-512 (MLAS AVX512F / Avx512Core kernels)"
        if "avx512f" in flags:
            return "AVX-512F (MLAS AVX512F kernels)"
        if {"avx2", "fma"} <= flags:
            return "AVX2 + FMA3 (MLAS FMA3 kernels)"
        return "SSE (MLAS SSE2/SSE4.1 kernels)"
    if arch() == "aarch64":
        return "NEON (MLAS aarch64 kernels" + (", SVE present" if "sve" in flags else "") + ")"
    return "MLAS scalar / platform default"


def _parse_onednn_verbose(text):
    """(oneDNN's 'isa:' line, {kind:implementation: primitives created}) from ONEDNN_VERBOSE=profile_create
    output (lines 'onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brgconv_1x1:avx2,...')."""
    isa, impls = None, {}
    for line in text.splitlines():
        if not line.startswith("onednn_verbose"):
            continue
        parts = line.split(",")
        if "isa:" in line and "info" in parts:
            isa = line.split("isa:", 1)[1].split(",")[0].strip()
        elif "primitive" in parts:
            i = parts.index("primitive") + 1
            if len(parts) > i + 3 and (parts[i] == "exec" or parts[i].startswith("create")):
                k = f"{parts[i + 2]}:{parts[i + 3]}"
                impls[k] = impls.get(k, 0) + 1
    return isa, impls


def _summarise_primitives(prims):
    """'brgconv_avx2_f32 <- Convolution': n, ... -> ({ISA: n}, [(ISA, layer, primitive, n)])."""
    by_isa, rows = {}, []
    for k, v in sorted(prims.items()):
        pt, _, lt = k.partition(" <- ")
        isa = isa_of_name(pt) or "ISA-independent (reorder / plain C++)"
        by_isa[isa] = by_isa.get(isa, 0) + v
        rows.append((isa, lt, pt, v))
    return by_isa, rows


def probe_isas(args, workdir, prep, available, flags, log):
    """One small worker per runtime (batch 1, one inference, the same environment as its benchmark
    workers plus ONEDNN_VERBOSE=profile_create) to see which ISA path it took; returns {runtime: info} with
    'used', 'asked', 'verified' strings for the report."""
    cap = args.peer_isa_cap
    out = {}
    for rt in args.runtimes:
        if not available.get(rt):
            continue
        if rt == "mobilevit":
            cand = [m for m in args.models if m in OURS_MODELS]
        elif rt == "torch":
            cand = list(args.models)
        else:
            cand = [m for m in args.models if prep["onnx"].get(f"{m}_b1", {}).get("ok")]
        if not cand or 1 not in args.model_batches.get(cand[0], [1]):
            cand = [m for m in cand if 1 in args.model_batches[m]]
        if not cand:
            continue
        model = cand[0]
        env = runtime_env(rt, args)
        # profile_create: one line per primitive created (kind, implementation); ONEDNN_VERBOSE=1 (also
        # every execution) makes OpenVINO 2026.4 fail now and then ("could not execute a primitive")
        venv = dict(env, ONEDNN_VERBOSE="profile_create") if rt in ("torch", "openvino") else env
        spec = {"runtime": rt, "model": model, "workdir": workdir, "isa": args.isa}
        r, err, stdout = run_worker("isa", spec, 1, timeout=600, env_extra=venv, want_stdout=True)
        info = {"model": model, "env": env}
        if r is None and venv is not env:  # once more without oneDNN's verbose output
            r, err2, stdout = run_worker("isa", spec, 1, timeout=600, env_extra=env, want_stdout=True)
            info["verbose_failed"] = err
            err = err2
        envtxt = ", ".join(f"`{k}={v}`" for k, v in env.items())
        if r is None:
            info.update(used=f"probe failed: {err}", asked=envtxt or "—", verified="unverified (probe failed)",
                        error=err)
            out[rt] = info
            log(f"ISA probe {rt}: FAILED {err}")
            continue
        dn_isa, impls = _parse_onednn_verbose(stdout)
        info["onednn_isa"], info["onednn_impls"] = dn_isa, impls
        if rt == "mobilevit":
            info["isa"] = r["isa"]
            info["used"] = f"`{r['isa']}` (`mobilevit.get_isa()`; available: {', '.join(r['available'])})"
            info["asked"] = (f"`MOBILEVIT_ISA={args.isa}` + `set_isa('{args.isa}')`" if args.isa != "auto"
                             else "auto (best of the CPU)")
            info["verified"] = ("yes: `get_isa()` is the forced path in every worker" if args.isa != "auto"
                                else "yes (`get_isa()`)")
        elif rt == "torch":
            bad = {k: v for k, v in impls.items() if "avx512" in k or "amx" in k}
            info["used"] = (f"ATen kernels `{r['isa']}` (`torch.backends.cpu.get_cpu_capability()`); oneDNN "
                            f"isa: {dn_isa or '? (no oneDNN primitive ran)'}; oneDNN primitives: "
                            + (", ".join(f"{k} ×{v}" for k, v in sorted(impls.items())) or "none")
                            + "; GEMMs in MKL (ISA not reported)")
            info["asked"] = envtxt or "—"
            if cap == "avx2":
                ok_aten = r["isa"].upper() == "AVX2"
                ok_dnn = (dn_isa is None or "AVX2" in dn_isa.upper() and "512" not in dn_isa) and not bad
                info["verified"] = ("ATen: " + ("yes" if ok_aten else f"**no** ({r['isa']})") + "; oneDNN: "
                                    + ("yes" if ok_dnn else f"**no** ({dn_isa}; {bad})")
                                    + "; MKL (`MKL_ENABLE_INSTRUCTIONS=AVX2`): set, cannot be verified "
                                    "(MKL_VERBOSE prints no ISA)")
            else:
                info["verified"] = "n/a (not capped)"
        elif rt == "onnxruntime":
            info["used"] = f"{mlas_isa(flags)}, inferred from the CPU flags: ORT does not report it"
            info["asked"] = "— (no switch exists)"
            info["verified"] = ("**cap not possible**: MLAS selects its kernels from CPUID once at start-up and "
                                "has no environment variable or session option to limit them; ONNX Runtime ran "
                                "its best kernels" if cap == "avx2" else "n/a (not capped)")
        elif rt == "openvino":
            prims = r.get("primitives", {})
            by_isa, rows = _summarise_primitives(prims)
            info["primitives"] = prims
            info["used"] = ("exec-graph `primitiveType` per node: "
                            + ", ".join(f"{k} ×{v}" for k, v in sorted(by_isa.items(), key=lambda t: -t[1]))
                            + f"; oneDNN isa: {dn_isa or '?'}; oneDNN primitives: "
                            + (", ".join(f"{k} ×{v}" for k, v in sorted(impls.items())) or "none seen"))
            info["asked"] = envtxt or "—"
            if cap == "avx2":
                left = [f"{lt} ({pt}) ×{v}" for isa, lt, pt, v in rows if isa in ("AVX-512", "AMX")]
                left += [f"oneDNN {k} ×{v}" for k, v in impls.items() if "avx512" in k or "amx" in k]
                mlas = [f"{lt} ({pt}) ×{v}" for isa, lt, pt, v in rows if isa.startswith("MLAS")]
                capped = [f"{lt} ({pt}) ×{v}" for isa, lt, pt, v in rows if isa == "AVX2"]
                if not left and not mlas:
                    info["verified"] = "yes: every JIT primitive is AVX2 (" + ", ".join(capped) + ")"
                else:
                    info["verified"] = ("**partly**: AVX2 primitives: " + (", ".join(capped) or "none")
                                        + ("; still AVX-512: " + ", ".join(left) if left else "")
                                        + ("; OpenVINO's MLAS GEMM (own CPUID dispatch, not capped by "
                                           "ONEDNN_MAX_CPU_ISA): " + ", ".join(mlas) if mlas else ""))
            else:
                info["verified"] = "n/a (not capped)"
        out[rt] = info
        log(f"ISA probe {rt}: {info['used'][:160]}")
    return out


def section_title(args, machine, probes):
    """A title that says what was measured: the machine kind and, when ours was forced to a lower
    path, how and what the peers were limited to."""
    if args.section_title:
        return args.section_title
    best = (vector_isas(machine["flags"]) or ["scalar"])[0]
    kind = {"avx512": "AVX-512 machine", "avx2": "AVX2 machine", "neon": "aarch64 (NEON) machine"}.get(
        best, f"{machine['arch']} machine")
    ours = probes.get("mobilevit", {}).get("isa", args.isa)
    if args.isa == "auto" or ours == best:
        title = f"{kind} (isa={ours})"
    else:
        title = (f"{ISA_NAME.get(ours, ours)} path (forced on an {kind}: ours via MOBILEVIT_ISA={ours}"
                 if machine["arch"] == "x86_64" else f"{ISA_NAME.get(ours, ours)} path (ours forced on an {kind}")
        if args.peer_isa_cap:
            st = []
            for rt in ("torch", "onnxruntime", "openvino"):
                if rt in probes:
                    v = probes[rt]["verified"]
                    st.append(f"{LABEL[rt]} " + ("not capped" if "not possible" in v else
                                                  "cap unverified" if "unverified" in v else
                                                  "capped partly" if "partly" in v or "**no**" in v else
                                                  "capped (MKL GEMM unverifiable)" if "MKL" in v else "capped"))
            title += "; peers capped to AVX2: " + ", ".join(st) + ")"
        else:
            title += "; peers not capped)"
    return title


def fmt_ms(r):
    """median [range]: over the passes' medians when there were several passes, else over the calls."""
    if r.get("passes_ok", 1) > 1:
        return f"{r['median_s'] * 1e3:.2f} [{r['pass_min_s'] * 1e3:.2f}–{r['pass_max_s'] * 1e3:.2f}]"
    return f"{r['median_s'] * 1e3:.2f} [{r['min_s'] * 1e3:.2f}–{r['max_s'] * 1e3:.2f}]"


def aggregate_passes(rs):
    """One result from the per-pass results of a (runtime, model, batch, threads) cell: the median
    of the passes' medians, the lowest and highest pass median, the worst accuracy / RSS / foreign
    CPU over the passes."""
    ok = [r for r in rs if "median_s" in r]
    if not ok:
        return dict(rs[-1])
    agg = dict(ok[0])
    meds = [r["median_s"] for r in ok]
    agg.update(median_s=statistics.median(meds), pass_medians=meds, pass_min_s=min(meds), pass_max_s=max(meds),
               min_s=min(r["min_s"] for r in ok), max_s=max(r["max_s"] for r in ok), n=sum(r["n"] for r in ok),
               max_abs_diff=max(r["max_abs_diff"] for r in ok), peak_rss_mib=max(r["peak_rss_mib"] for r in ok),
               passes_ok=len(ok), passes_failed=len(rs) - len(ok))
    fc = [r["foreign_cpu"] for r in ok if r.get("foreign_cpu") is not None]
    agg["foreign_cpu"] = max(fc) if fc else None
    agg["core_rtt_ns"] = [v for r in ok for v in r.get("core_rtt_ns") or ()]
    agg["split_passes"] = sum(split_placement(r) for r in ok)
    return agg


def fastest_peer(res, rts, m, b, n, peers=PEERS):
    """(median s, runtime) of the fastest of ONNX Runtime and OpenVINO for a cell, or None."""
    c = [(res[(rt, m, b, n)]["median_s"], rt) for rt in peers if rt in rts and "median_s" in res.get((rt, m, b, n), {})]
    return min(c) if c else None


def same_die_results(raw):
    """Per cell, the passes whose core_rtt readings all said one die (every pass of a 1-thread cell),
    aggregated like S["results"]; cells with no such pass are left out."""
    out = {}
    for key, rs in raw.items():
        keep = [r for r in rs if "median_s" in r and not split_placement(r)]
        if keep:
            out[key] = aggregate_passes(keep)
    return out


def target_rows(S, res=None):
    """The issue-17 targets, computed from the measured medians (of S["results"], or of `res`):
    (what, cell, measured, goal, PASS/FAIL, key), key naming the check independently of the peer."""
    args = S["args"]
    res = S["results"] if res is None else res
    rts = args.runtimes
    peaks = {p["threads"]: p["gflops"] for p in S["fma"] if "gflops" in p}
    macs = {m: (S["prep"].get("models", {}).get(m, {}).get("macs") or MACS.get(m)) for m in args.models}
    ours = lambda m, b, n: res.get(("mobilevit", m, b, n), {}).get("median_s")  # noqa: E731
    rows = []
    big = [b for b in args.batches if b > 1]
    bbig = 16 if 16 in big else (max(big) if big else None)

    def verdict(v, goal, ge=True):
        return "PASS" if (v >= goal if ge else v <= goal) else "FAIL"
    for b, goal in ((1, 1.3), (bbig, 1.5)):
        if b is None:
            continue
        for m in MODELS:
            if m not in args.models:
                continue
            for n in args.threads:
                o, fp = ours(m, b, n), fastest_peer(res, rts, m, b, n)
                if o and fp:
                    v = fp[0] / o
                    rows.append((f"ours vs fastest peer, batch {b}", f"{SHORT[m]}, {n}T (vs {LABEL[fp[1]]})",
                                 f"{v:.2f}×", f"≥ {goal}×", verdict(v, goal), ("peer", m, b, n)))
    if "mobilevit_s" in args.models and 1 in args.threads and 2 in args.threads:
        o1, o2 = ours("mobilevit_s", 1, 1), ours("mobilevit_s", 1, 2)
        if o1 and o2:
            rows.append(("2T / 1T speed-up, batch 1", "S", f"{o1 / o2:.2f}×", "≥ 1.7×", verdict(o1 / o2, 1.7),
                         ("scaling",)))
    if bbig and "mobilevit_s" in args.models:
        for n in args.threads:
            o = ours("mobilevit_s", bbig, n)
            if o and peaks.get(n) and macs.get("mobilevit_s"):
                frac = 2 * macs["mobilevit_s"] * bbig / o / 1e9 / peaks[n]
                rows.append((f"% of FMA peak, batch {bbig}", f"S, {n}T (peak {peaks[n]:.0f} GFLOP/s, "
                             f"{S['fma_isa']})", f"{100 * frac:.0f} %", "≥ 75 %", verdict(frac, 0.75), ("peak", n)))
    if "mobilevit_xs" in args.models and "mobilenet_v2" in args.models:
        for b in args.batches:
            for n in args.threads:
                o, fp = ours("mobilevit_xs", b, n), fastest_peer(res, rts, "mobilenet_v2", b, n)
                if o and fp:
                    v = o / fp[0]
                    rows.append((f"MobileViT-XS (ours) / MobileNetV2 (fastest peer), batch {b}",
                                 f"{n}T (MNv2 in {LABEL[fp[1]]})", f"{v:.2f}×", "≤ 2×", verdict(v, 2.0, ge=False),
                                 ("mnv2", b, n)))
    return rows


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
    rtt = sorted(v for rs in S.get("raw", {}).values() for r in rs for v in r.get("core_rtt_ns") or () if v is not None)
    if rtt:
        nsplit = sum(split_placement(r) for rs in S["raw"].values() for r in rs)
        nmeas = sum(bool(r.get("core_rtt_ns")) for rs in S["raw"].values() for r in rs)
        w(f"- Cache-line round trip between the two CPUs (`benchmarks/core_rtt.c`, before and after every "
          f"measurement with 2+ threads): median {statistics.median(rtt):.0f} ns, range {rtt[0]:.0f}–{rtt[-1]:.0f} ns; "
          f"{nsplit} of {nmeas} such measurements saw more than {SPLIT_NS:.0f} ns (the vCPUs on different dies: "
          "data shared between the threads crosses the dies, every runtime's 2-thread time rises) and are marked ‡")
    elif S.get("core_rtt_error"):
        w(f"- Cache-line round trip between the CPUs not measured: {S['core_rtt_error']}")
    w(f"- Architecture: {info.get('arch', '?')}; FMA vector ISAs of this CPU: "
      f"{', '.join(vector_isas(fl)) or 'none (scalar only)'}")
    mv = next((r for r in res.values() if r.get("runtime") == "mobilevit" and "detail" in r), None)
    ver = S["versions"]
    w(f"- mobilevit {mv['version'] if mv else '?'} ({mv['detail'] if mv else 'not run'})")
    for k in ("torch", "timm") + (("transformers",) if any(m in SEG_MODELS for m in args.models) else ()) \
            + ("onnxruntime", "openvino", "onnx", "numpy"):
        w(f"- {k} {ver.get(k, '?')}")
    w("")
    probes = S.get("isa_probe", {})
    if probes:
        w("ISA path of each runtime (`--isa " + args.isa + "`" + (f", `--peer-isa-cap {args.peer_isa_cap}`"
          if args.peer_isa_cap else ", peers not capped") + "; seen by one batch-1 inference per runtime in "
          "the same environment as its benchmark workers, with `ONEDNN_VERBOSE=profile_create` for PyTorch and OpenVINO, "
          "and OpenVINO's execution-graph `primitiveType` per node):\n")
        w("| runtime | asked for | what it ran | cap verified? |")
        w("|---|---|---|---|")
        for rt in rts:
            if rt in probes:
                pr = probes[rt]
                w(f"| {LABEL[rt]} | {pr['asked']} | {pr['used']} | {pr['verified']} |")
        w("")
        # OpenVINO: the kernels of every model as its benchmark workers compiled it
        ovp = {}
        for (rt, m, b, n), r in sorted(res.items(), key=lambda kv: ALL_MODELS.index(kv[0][1])):
            if rt == "openvino" and r.get("primitives") and (m, b) not in ovp:
                ovp[(m, b)] = _summarise_primitives(r["primitives"])[0]
        if ovp:
            w("OpenVINO kernels per model, as compiled by its benchmark workers (nodes per ISA named in "
              "`primitiveType`): " + "; ".join(
                  f"{SHORT[m]} b{b}: " + ", ".join(f"{k} ×{v}" for k, v in sorted(d.items(), key=lambda t: -t[1]))
                  for (m, b), d in ovp.items()) + ".\n")
    npass = args.passes
    w(f"Passes: {npass}. " + ("Each pass runs every (runtime, model, batch, threads) once, each in its own "
      "subprocess, the runtimes of a cell one after another in an order rotated by one between passes; "
      "a table cell is the median of the passes' medians, [in brackets the lowest–highest pass median]."
      if npass > 1 else "One pass: a table cell is the median of the timed calls, [min–max of the calls]."))
    w("")
    w("Method: same random weights everywhere (timm init, BatchNorm stats/affine randomised), input "
      f"{IMG}×{IMG} NCHW float32, fp32 everywhere (OpenVINO with `INFERENCE_PRECISION_HINT=f32`). Each "
      "(runtime, model, batch, threads) is a fresh subprocess, run one after another; threads set explicitly "
      "(`mobilevit.set_num_threads`, `torch.set_num_threads` + `set_num_interop_threads(1)`, ORT "
      "`intra_op_num_threads=n, inter_op=1, ORT_ENABLE_ALL`, OpenVINO `INFERENCE_NUM_THREADS=n, NUM_STREAMS=1, "
      "PERFORMANCE_HINT=LATENCY`, pinning off) and `OMP_NUM_THREADS=n`. "
      f"Warm-up {S['warmup'][1]} (batch 1) / {S['warmup'][16]} (batch > 1), then up to {args.runs} timed runs at "
      f"batch 1 and up to {args.runs_batch} at larger batches (stopping after {args.max_seconds:.0f} s once "
      f"{S['min_runs']} are done), per pass. Only the inference call is timed (mobilevit's includes its NCHW→NHWC "
      "input conversion). Times: median [range] as said under Passes. ONNX Runtime and OpenVINO run the ONNX file exported "
      "by `torch.onnx.export` (" + S.get("exporter", "?") + ", opset 17, static shape per batch size).\n")
    ext = [m for m in args.models if m not in MODELS + REF_MODELS]
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

    if "mobilenet_v2" in args.models:
        w("Reference CNN: torchvision `mobilenet_v2(weights=None)` (width 1.0, torchvision's init, BatchNorm "
          f"randomised the same way), at the same {IMG}×{IMG} input as MobileViT (the MobileViT paper compares "
          "at 256×256 for MobileViT and 224×224 for MobileNetV2; here both get 256×256), exported to ONNX the same "
          "way and run in PyTorch eager, ONNX Runtime and OpenVINO (mobilevit does not run it).\n")

    # ---- skipped / failed
    notes = S["notes"]
    if notes:
        w("## Skipped or failed\n")
        for n_ in notes:
            w(f"- {n_}")
        w("")

    # ---- issue-17 targets
    trows = target_rows(S)
    if trows:
        w("## Targets (issue 17), from the medians below\n")
        w("Fastest peer = the faster of ONNX Runtime and OpenVINO for that cell"
          + ("; with `--peer-isa-cap` see above which peer was really limited to AVX2 (an uncapped peer makes "
             "the comparison harder for us, not easier)" if args.peer_isa_cap else "") + ".\n")
        # with cross-die passes in the run: the same checks from the same-die passes alone, as a second
        # reading (the verdict column stays the all-passes one)
        split_seen = any(split_placement(r) for rs in S.get("raw", {}).values() for r in rs)
        same = {t[5]: t for t in target_rows(S, same_die_results(S["raw"]))} if split_seen else None
        w("| target | cell | measured | goal | result |" + (" same-die passes only |" if same is not None else ""))
        w("|---|---|---:|---:|---|" + ("---|" if same is not None else ""))
        for t in trows:
            extra = ""
            if same is not None:
                u = same.get(t[5])
                if u is None:
                    extra = " — |"
                else:   # name the peer when the same-die fastest one is another
                    peer = f" ({u[1].split('(', 1)[1]}" if "(" in u[1] and u[1] != t[1] else ""
                    extra = f" {u[2]} {u[4]}{peer} |"
            w("| " + " | ".join(t[:4]) + f" | **{t[4]}** |" + extra)
        npass_ = sum(t[4] == "PASS" for t in trows)
        w("")
        w(f"{npass_} of {len(trows)} checks pass." + (" (`--quick` run: these numbers mean nothing.)"
                                                     if args.quick else ""))
        if same is not None:
            nsame = sum(u[4] == "PASS" for u in same.values())
            w(f"Same-die passes only: every cell's median over the passes whose round-trip readings (before and "
              f"after) stayed at one die, i.e. without its ‡ passes (1-thread cells: every pass): {nsame} of "
              f"{len(same)} checks pass; — = no same-die pass for one side of that check.")
        w("")

    def cell(rt, model, b, n, f, mark=True):
        r = res.get((rt, model, b, n))
        if r is None:
            return "—"
        if "error" in r:
            return "failed"
        busy = mark and r.get("foreign_cpu") is not None and r["foreign_cpu"] > BUSY
        split = mark and split_placement(r)
        return f(r) + (" †" if busy else "") + (" ‡" if split else "")

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
                w(f"{h} Latency, batch 1 (ms per image; " + (
                    f"median of {args.passes} pass medians [lowest–highest pass median])\n" if args.passes > 1
                    else "median [min–max])\n"))
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
            w(f"† = other processes used more than {BUSY} CPU while this was timed (noisy)"
              + (" in at least one pass" if args.passes > 1 else "") + f"; ‡ = the two CPUs were on different "
              f"dies (cache-line round trip above {SPLIT_NS:.0f} ns, `benchmarks/core_rtt.c`) around "
              + ("at least one pass" if args.passes > 1 else "the measurement") + ".\n")
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
            if "mobilevit_xs" in models and "mobilenet_v2" in models:
                rows = []
                for n in threads:
                    o = res.get(("mobilevit", "mobilevit_xs", b, n), {}).get("median_s")
                    fp = fastest_peer(res, rts, "mobilenet_v2", b, n)
                    if o and fp:
                        rows.append(f"{n}t: {o / fp[0]:.2f}× (MobileNetV2 in {LABEL[fp[1]]})")
                if rows:
                    w("MobileViT-XS (ours) / MobileNetV2 (fastest of ONNX Runtime, OpenVINO) latency: "
                      + "; ".join(rows) + ".\n")

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
            w("Reference: timm eager (SDPA attention) on the same weights and input, computed once in the prep step"
              + ("; MobileNetV2: torchvision eager" if "mobilenet_v2" in models else "") + ".\n")
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
    ch = next((p.get("chains", 12) for p in S["fma"] if "gflops" in p), 12)
    w(f"{ch} independent FMA chains in vector registers per thread, threads pinned one per core "
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
    if S.get("fma_isa") and args.isa not in ("auto", S["fma_isa"]):
        w(f"(ours ran `{args.isa}`, which has no FMA peak of its own; the peak is that of {S['fma_isa']}.)\n")
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
      f"noise. The chart is `benchmarks/{os.path.basename(args.png)}`.\n")
    write_output(path, L, args.section, S.get("title", ""))


SECTION_BEGIN = "<!-- bench_compare section {} -->"
SECTION_END = "<!-- /bench_compare section {} -->"
FILE_HEADER = ("# MobileViT CPU inference: mobilevit vs PyTorch, ONNX Runtime, OpenVINO\n\n"
               "One section per machine kind (or forced ISA path), each written by "
               "`benchmarks/bench_compare.py --out benchmarks/RESULTS.md --section NAME`, which replaces only "
               "its own section; everything outside the section markers is kept as it is.\n")


def write_output(path, lines, section, title):
    """Without a section: `lines` is the whole file.  With one: the report's headings move down one
    level under '## title', and the text between this section's markers in `path` is replaced (the
    section is appended when the file has no such section yet); the rest of the file is kept."""
    if not section:
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return
    body = [f"## {title}", ""] + ["#" + ln if ln.startswith("#") else ln for ln in lines[1:]]
    begin, end = SECTION_BEGIN.format(section), SECTION_END.format(section)
    block = begin + "\n" + "\n".join(body).rstrip() + "\n" + end
    old = open(path).read() if os.path.exists(path) else FILE_HEADER
    if begin in old and end in old:
        i, j = old.index(begin), old.index(end) + len(end)
        new = old[:i] + block + old[j:]
    else:
        last = old.rfind("<!-- /bench_compare section ")
        if last >= 0:  # after the last section
            k = old.index("-->", last) + 3
            new = old[:k] + "\n\n" + block + old[k:]
        else:
            new = old.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)


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
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=ALL_MODELS + list(MODEL_SETS),
                    metavar="MODEL",
                    help="model keys (" + ", ".join(ALL_MODELS) + ") or sets: v1 (mobilevit_xxs/xs/s), "
                         "ref (mobilenet_v2, torchvision, peers only), v2, seg, extended (v2 + seg), all; "
                         "default: v1 + ref")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16],
                    help="batch sizes for the classification models (default 1 16); the DeepLabv3 "
                         "models run batch 1 and --seg-batch instead of every batch > 1")
    ap.add_argument("--seg-batch", type=int, default=4,
                    help="throughput batch of the 512x512 segmentation models (default 4)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runtimes", nargs="+", default=RUNTIMES, choices=RUNTIMES)
    ap.add_argument("--runs", type=int, default=100, help="timed runs at batch 1, per pass (default 100)")
    ap.add_argument("--runs-batch", type=int, default=15, help="timed runs at batch > 1, per pass (default 15)")
    ap.add_argument("--min-runs", type=int, default=10, help="never fewer timed runs than this")
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="stop timing a measurement after this long once --min-runs are done (default 20)")
    ap.add_argument("--passes", type=int, default=None,
                    help="passes over all measurements, runtimes in rotated order; the report gives the median "
                         "of the pass medians (default 3, 1 with --quick)")
    ap.add_argument("--isa", default="auto", choices=ISAS,
                    help="force mobilevit's kernel path (MOBILEVIT_ISA + set_isa in every worker; default auto); "
                         "the FMA peak is measured for the same ISA")
    ap.add_argument("--peer-isa-cap", default=None, choices=["avx2"],
                    help="limit the peers to AVX2 where they allow it (PyTorch: ATEN_CPU_CAPABILITY, "
                         "ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS; OpenVINO: ONEDNN_MAX_CPU_ISA; ONNX Runtime: "
                         "impossible); the report says what was verified")
    ap.add_argument("--section", default=None, metavar="NAME",
                    help="replace only section NAME of --out (e.g. avx512, avx2) and keep the rest of the file")
    ap.add_argument("--section-title", default=None,
                    help="heading of the section (default: derived from the machine, --isa and --peer-isa-cap)")
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
    if a.passes is None:
        a.passes = 1 if a.quick else 3
    if a.passes < 1:
        ap.error("--passes must be at least 1")
    if a.section is not None and not all(c.isalnum() or c in "-_." for c in a.section):
        ap.error("--section NAME: letters, digits, '-', '_', '.' only")
    a.batches = sorted(set(a.batches))
    a.threads = sorted(set(a.threads))
    chosen = {k for m in a.models for k in MODEL_SETS.get(m, [m])}
    a.models = [m for m in ALL_MODELS if m in chosen]
    a.model_batches = {m: model_batches(m, a.batches, a.seg_batch) for m in a.models}
    a.runtimes = [r for r in RUNTIMES if r in a.runtimes]
    if a.png is None:
        a.png = os.path.join(os.path.dirname(os.path.abspath(a.out)),
                             f"results_{a.section}.png" if a.section else "results.png")
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

    if not args.section and os.path.exists(args.out) and "<!-- bench_compare section " in open(args.out).read():
        raise SystemExit(f"{args.out} has per-machine sections: pass --section NAME (e.g. avx512, avx2) to replace "
                         "one of them, or --out another file (the whole file would be overwritten)")
    flags = S["machine"]["flags"]
    if args.peer_isa_cap == "avx2" and "avx2" not in vector_isas(flags):
        raise SystemExit("--peer-isa-cap avx2 needs an x86-64 CPU with AVX2 and FMA")
    if args.isa not in ("auto", "ref") and args.isa not in vector_isas(flags):
        raise SystemExit(f"--isa {args.isa}: this CPU ({S['machine']['arch']}) has "
                         f"{', '.join(vector_isas(flags)) or 'no FMA vector ISA'}")
    if "mobilenet_v2" in args.models and pkg_version("torchvision") == "not installed":
        S["notes"].append("MobileNetV2 reference: torchvision not installed, skipped (`pip install torchvision`)")
        args.models = [m for m in args.models if m != "mobilenet_v2"]
        if not args.models:
            raise SystemExit("nothing to measure")
    try:
        # 1. FMA peak (of the ISA ours is forced to, else the best of the CPU)
        S["fma"] = []
        exe, isa = build_fma_peak(workdir, args.isa if args.isa in FMA_FLAGS else None)
        S["fma_isa"] = isa if exe else None
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

        rtt_exe, S["core_rtt_error"] = build_core_rtt(workdir) if S["machine"]["ncpu"] > 1 else (None, None)

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

        # ISA path of every runtime (ours forced with --isa, peers capped with --peer-isa-cap)
        S["isa_probe"] = probe_isas(args, workdir, prep, available, flags, log)
        mv_probe = S["isa_probe"].get("mobilevit", {})
        if "mobilevit" in args.runtimes and mv_probe.get("error") and args.isa != "auto":
            raise SystemExit(f"mobilevit cannot run --isa {args.isa}: {mv_probe['error']}")
        S["title"] = section_title(args, S["machine"], S["isa_probe"])
        log(f"section title: {S['title']}")

        # 3. measurements: one subprocess each, sequential (segmentation models: --seg-batch for b > 1);
        #    --passes passes over all cells, the runtimes of a cell in an order rotated by one per pass
        cells = []
        for i, b0 in enumerate(args.batches):
            for m in args.models:
                b = model_batch(m, b0, args.seg_batch)
                if any(model_batch(m, bp, args.seg_batch) == b for bp in args.batches[:i]):
                    continue  # this segmentation batch was already measured
                onnx_ok = prep["onnx"].get(f"{m}_b{b}", {}).get("ok", False)
                for n in args.threads:
                    cells.append((m, b, n, onnx_ok))
        raw = {}
        for ps in range(args.passes):
            k = ps % len(args.runtimes)
            order = args.runtimes[k:] + args.runtimes[:k]
            log(f"pass {ps + 1}/{args.passes}, runtime order: {', '.join(order)}")
            for m, b, n, onnx_ok in cells:
                for rt in order:
                    if not available[rt] or (rt in ("onnxruntime", "openvino") and not onnx_ok) \
                            or (rt == "mobilevit" and m not in OURS_MODELS):
                        continue
                    spec = {"runtime": rt, "model": m, "batch": b, "threads": n, "workdir": workdir,
                            "runs": args.runs if b == 1 else args.runs_batch,
                            "warmup": S["warmup"][1] if b == 1 else S["warmup"][16],
                            "min_runs": args.min_runs, "max_seconds": args.max_seconds, "isa": args.isa}
                    rtt0 = run_core_rtt(rtt_exe) if rtt_exe and n > 1 else None
                    r, err = run_worker("bench", spec, n, timeout=900, env_extra=runtime_env(rt, args))
                    rtt = [rtt0, run_core_rtt(rtt_exe)] if rtt0 is not None else None
                    if r is None:
                        r = {"runtime": rt, "model": m, "batch": b, "threads": n, "error": err}
                        S["notes"].append(f"{LABEL[rt]} {SHORT[m]} batch {b} {n} thread(s) failed"
                                          + (f" in pass {ps + 1}" if args.passes > 1 else "") + f": {err}")
                        log(f"{rt:12s} {SHORT[m]:10s} b{b:<3d} {n}t  FAILED: {err}")
                    else:
                        log(f"{rt:12s} {SHORT[m]:10s} b{b:<3d} {n}t  median {r['median_s'] * 1e3:8.2f} ms "
                            f"(n={r['n']}) rss {r['peak_rss_mib']:.0f} MiB  diff {r['max_abs_diff']:.1e}  "
                            f"others {r.get('foreign_cpu') or 0:.2f} CPU"
                            + (f"  core rtt {rtt[0]:.0f}/{rtt[1] or 0:.0f} ns" if rtt else ""))
                    r["pass"] = ps + 1
                    if rtt:
                        r["core_rtt_ns"] = rtt
                    raw.setdefault((rt, m, b, n), []).append(r)
        S["raw"] = raw
        S["results"] = {key: aggregate_passes(v) for key, v in raw.items()}
        crashed = [rt for rt in args.runtimes if runtime_env(rt, args) and any(
            k[0] == rt and "crashed" in v.get("error", "") for k, v in S["results"].items())]
        if crashed:
            S["notes"].append(
                f"{', '.join(LABEL[rt] for rt in crashed)} crashed with this run's ISA environment set ("
                + "; ".join(f"{LABEL[rt]}: " + ", ".join(f"`{k}={v}`" for k, v in runtime_env(rt, args).items())
                            for rt in crashed) + "); run the same cell without "
                "--isa / --peer-isa-cap to see whether the cap is the cause (OpenVINO 2026.4.1 segfaults in its first "
                "MobileViT-XS inference under ONEDNN_MAX_CPU_ISA=AVX2 and runs it uncapped)")

        # 4. op-family breakdown (mobilevit S, 2 threads)
        ours_models = [m for m in args.models if m in OURS_MODELS]
        if not args.no_profile and "mobilevit" in args.runtimes and ours_models:
            pm = "mobilevit_s" if "mobilevit_s" in args.models else ours_models[-1]
            pn = 2 if 2 in args.threads else max(args.threads)
            pb = [(b, (3 if args.quick else 50) if b == 1 else (2 if args.quick else 10))
                  for b in args.model_batches[pm]]
            log(f"profile {pm} {pn} threads ...")
            prof, err = run_worker("profile", {"workdir": workdir, "model": pm, "threads": pn, "batches": pb,
                                               "isa": args.isa}, pn, timeout=900,
                                   env_extra=runtime_env("mobilevit", args))
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
                       "profile": S.get("profile"), "notes": S["notes"], "isa_probe": S.get("isa_probe"),
                       "title": S.get("title"), "passes": args.passes,
                       "results": [v for v in S["results"].values()],
                       "results_per_pass": [r for v in S.get("raw", {}).values() for r in v]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
