"""Host side of the arm64 check (x86-64, with torch and timm): write the
expected outputs that the emulated aarch64 build is compared to.

    python make_refs.py OUTDIR      (mobilevit = the x86 build of the same commit)

OUTDIR/ops.npz         per op case: PyTorch's output and our x86 "ref" ISA's
OUTDIR/<model>.npz     timm weights (randomised, seeded), and for each size
                       the logits of timm, of our x86 "ref" ISA with those
                       weights, and of our x86 "ref" ISA with create_model's
                       own seeded random weights (seed=0)
The x86 build is checked against PyTorch here too, so a wrong reference is
caught on the host before the emulated side compares anything.
"""
import os
import sys
import time

import numpy as np
import torch
import timm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402
import mobilevit  # noqa: E402


def randomize_(model, seed):
    """As tests/reference_models.py: non-trivial BN/LN statistics and affines."""
    g = torch.Generator().manual_seed(seed)

    def u(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                u(m.running_mean, -0.3, 0.3)
                u(m.running_var, 0.5, 2.0)
                u(m.weight, 0.5, 1.5)
                u(m.bias, -0.3, 0.3)
            elif isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                u(m.weight, 0.5, 1.5)
                u(m.bias, -0.3, 0.3)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                u(m.bias, -0.2, 0.2)
    return model.eval()


def check(what, ours, ref):
    err, scale = cases.max_err(ours, ref)
    ok = err <= cases.TOL * scale
    print(f"  host {what}: max abs diff {err:.2e} (limit {cases.TOL * scale:.2e}) {'ok' if ok else 'FAIL'}")
    return ok


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    print(f"host: mobilevit from {os.path.dirname(mobilevit.__file__)}, isas {mobilevit.available_isas()}, "
          f"torch {torch.__version__}, timm {timm.__version__}")
    ok = True
    rec = {}
    for name, a in cases.op_inputs().items():
        t = cases.run_torch(torch, name, a)
        r = cases.run_ours(mobilevit, name, a, isa="ref")
        ok &= check(f"op {name} x86-ref vs torch", r, t)
        rec[f"torch/{name}"], rec[f"x86ref/{name}"] = t, r
    np.savez(os.path.join(out, "ops.npz"), **rec)

    mobilevit.set_isa("ref")
    for name in cases.MODELS:
        torch.manual_seed(3)
        ref = randomize_(timm.create_model(name, pretrained=False), 4)
        sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
        ours = mobilevit.create_model(name)
        res = ours.load_state_dict(sd)
        assert not res.missing_keys and not res.unexpected_keys, res
        seeded = mobilevit.create_model(name, seed=0)
        rec = {f"w/{k}": v for k, v in sd.items()}
        for size in cases.SIZES:
            x = cases.model_input(size)
            tag = f"{size[0]}x{size[1]}"
            with torch.no_grad():
                t = ref(torch.from_numpy(x)).numpy()
            r = ours(x)
            ok &= check(f"{name} {tag} x86-ref vs timm", r, t)
            rec[f"torch/{tag}"], rec[f"x86ref/{tag}"] = t, r
            rec[f"x86ref_seed0/{tag}"] = seeded(x)
        np.savez(os.path.join(out, f"{name}.npz"), **rec)
    return 0 if ok else 1


if __name__ == "__main__":
    t0 = time.time()
    rc = main(sys.argv[1])
    print(f"host: references written to {sys.argv[1]} in {time.time() - t0:.1f}s" + ("" if rc == 0 else " (MISMATCH)"))
    sys.exit(rc)
