"""Time loading a MobileViT-S sized state dict: mobilevit.checkpoint vs torch.load / safetensors.

    python benchmarks/bench_checkpoint_load.py [--model mobilevit_s] [--runs 7]

The model is built by timm with random weights (no download), saved as a torch zip file, a legacy
(non-zip) torch file and a safetensors file.  Each loader runs ``--runs`` times on a warm page cache;
the table shows the median.  Our reader returns views of a copy-on-write file mapping, so pages are
touched lazily: the "+ copy" rows also copy every array once (what building a model does), which is
the fairer comparison with torch.load, which reads everything into memory.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def median_ms(fn, runs):
    fn()  # warm-up (page cache, imports)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilevit_s")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    import timm
    import torch
    from safetensors.torch import load_file as st_load_torch
    from safetensors.torch import save_file as st_save_torch

    from mobilevit.checkpoint import load_checkpoint

    torch.manual_seed(0)
    sd = timm.create_model(args.model, pretrained=False).state_dict()
    n_params = sum(v.numel() for v in sd.values())
    n_bytes = sum(v.numel() * v.element_size() for v in sd.values())

    def ours(path):
        return lambda: load_checkpoint(path, check_finite="ignore")

    def ours_copy(path):
        def run():
            out = load_checkpoint(path, check_finite="ignore")
            return [np.array(a, copy=True) for a in out.values()]
        return run

    with tempfile.TemporaryDirectory() as d:
        zpath = os.path.join(d, "m.pt")
        lpath = os.path.join(d, "m_legacy.pt")
        spath = os.path.join(d, "m.safetensors")
        torch.save(sd, zpath)
        torch.save(sd, lpath, _use_new_zipfile_serialization=False)
        st_save_torch({k: v.contiguous() for k, v in sd.items()}, spath)

        # Sanity: identical values before timing anything.
        for p in (zpath, lpath, spath):
            got = load_checkpoint(p, check_finite="ignore")
            assert all(np.array_equal(got[k], v.numpy()) for k, v in sd.items()), p

        rows = [
            ("torch zip", "mobilevit.checkpoint", ours(zpath)),
            ("torch zip", "mobilevit.checkpoint + copy", ours_copy(zpath)),
            ("torch zip", "torch.load(weights_only=True)", lambda: torch.load(zpath, weights_only=True)),
            ("torch zip", "torch.load(mmap=True)", lambda: torch.load(zpath, weights_only=True, mmap=True)),
            ("legacy", "mobilevit.checkpoint", ours(lpath)),
            ("legacy", "torch.load(weights_only=True)", lambda: torch.load(lpath, weights_only=True)),
            ("safetensors", "mobilevit.checkpoint", ours(spath)),
            ("safetensors", "mobilevit.checkpoint + copy", ours_copy(spath)),
            ("safetensors", "safetensors.torch.load_file", lambda: st_load_torch(spath)),
        ]
        print(f"{args.model}: {len(sd)} tensors, {n_params / 1e6:.2f} M elements, "
              f"{n_bytes / 2**20:.1f} MiB; median of {args.runs} runs (warm cache)\n")
        print("| format | loader | median ms |")
        print("|---|---|---:|")
        for fmt, name, fn in rows:
            print(f"| {fmt} | {name} | {median_ms(fn, args.runs):.2f} |")


if __name__ == "__main__":
    main()
