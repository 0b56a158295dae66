#!/usr/bin/env python
"""Train the small default model bundled in ``mobilevit/data/`` (used by ``mobilevit predict``).

    source /work/venv/bin/activate          # torch, timm, scikit-learn, safetensors, pillow
    python benchmarks/train_default_model.py [--epochs 30] [--out mobilevit/data]

What it does
------------
* Data: scikit-learn's handwritten digits (``load_digits``: 1797 images, 8x8, gray levels 0..16,
  shipped inside scikit-learn, no download).  Stratified 80/20 train/held-out split with
  ``train_test_split(..., test_size=0.2, stratify=y, random_state=SPLIT_SEED)``.
* Base images (exactly what the test and the CLI see): ``x = img / 16`` in [0, 1] upscaled
  8x8 -> 64x64 bilinearly with half-pixel centres (``upscale_digits``, numpy; identical to
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``), quantised to
  ``uint8 = rint(x * 255)``, replicated to 3 channels (RGB).
  The model input at the base size is ``uint8 / 255`` in NCHW: mean 0, std 1, no normalisation.
* Model: ``timm.create_model("mobilevit_xxs", num_classes=10, pretrained=False)``, the PyTorch
  reference the C package mirrors.
* Training: MobileViT's multi-scale variable-batch sampler (``mobilevit.sampler.VariableBatchSampler``,
  spec section 6) scaled down to the tiny images: base 64x64 with batch 64, min 48, max 96,
  5 scales, ``divisor=16`` (the paper's ``check_scale=32`` would collapse 48..96 to {64, 96}),
  giving (48, 113), (64, 64), (80, 40), (96, 28) -- about the same pixels per batch.  Each batch is
  augmented with one random affine per image (rotation, scale, shift, shear) and resampled straight
  to the sampled (h, w) with ``affine_grid`` + bilinear ``grid_sample``.  AdamW (lr 2e-3,
  weight decay 0.01), linear warm-up then cosine decay per step, label smoothing 0.1.  The
  held-out accuracy is printed every 5 epochs for information only: the final weights are saved,
  nothing is selected on the held-out set.
* Determinism: ``torch.manual_seed``, a seeded ``torch.Generator`` for augmentation, the sampler's
  own seed, ``torch.use_deterministic_algorithms(True)``, 2 threads.  Re-running on the same machine
  and torch build gives the same weights; other CPUs / builds may differ in the last bits.
* Output (``--out``, default ``mobilevit/data``):
  ``default_model.safetensors`` (float32, timm key names, BN running stats, no
  ``num_batches_tracked``), ``default_model.json`` (metadata), ``heldout_digits.npz`` (the held-out
  8x8 originals ``digits8`` uint8 [N, 8, 8] in 0..16 -- the 64x64 RGB versions would not fit in
  1 MB -- ``labels`` uint8 [N] and ``dataset_index`` into ``load_digits``) and ``samples/`` (the
  first held-out image of each digit as a 64x64 RGB PNG, ``digit_<label>_idx<i>.png`` where ``i``
  indexes ``heldout_digits.npz``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SPLIT_SEED = 0
BASE = 64
N_CLASSES = 10


def load_sampler_module():
    """``mobilevit.sampler`` without importing the package (whose C extension may not be built)."""
    import importlib.util
    path = os.path.join(ROOT, "mobilevit", "sampler.py")
    spec = importlib.util.spec_from_file_location("_mobilevit_sampler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upscale_digits(digits8: np.ndarray, size: int = BASE) -> np.ndarray:
    """[N, 8, 8] gray levels 0..16 -> uint8 RGB [N, size, size, 3], numpy only.

    Bilinear, half-pixel centres (= ``F.interpolate(mode="bilinear", align_corners=False)``,
    no antialias): source coordinate ``s = (i + 0.5) * 8 / size - 0.5`` clamped at 0, taps
    ``floor(s)`` and ``min(floor(s) + 1, 7)``.  Applied to ``digits8 / 16``, then
    ``np.rint(x * 255)`` (half to even) and replicated to 3 channels.  For size 64 every
    intermediate is a small dyadic rational, so this is bit-exact in any float precision and
    equal to torch's result (checked in ``main``).  tests/test_default_model.py repeats it.
    """
    n_in = digits8.shape[-1]
    src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    a = np.zeros((size, n_in))
    a[np.arange(size), i0] += 1.0 - frac
    a[np.arange(size), i1] += frac
    x = np.asarray(digits8, np.float64) / 16.0
    up = np.einsum("hi,nij,wj->nhw", a, x, a)
    u8 = np.clip(np.rint(up * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1)


def upscale_digits_torch(digits8: np.ndarray, size: int = BASE) -> np.ndarray:
    """The same with torch's ``F.interpolate``: the cross-check for :func:`upscale_digits`."""
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy((np.asarray(digits8, np.float64) / 16.0).astype(np.float32))[:, None]
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    u8 = np.clip(np.rint(up.numpy()[:, 0].astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1)


def augment_resize(x, h: int, w: int, gen, strength: float = 1.0):
    """Random affine per image + resample to (h, w).  x: float [B, 3, 64, 64] in [0, 1]."""
    import torch
    import torch.nn.functional as F
    b = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    ang = uniform(-12.0, 12.0) * (math.pi / 180.0) * strength
    scale = 1.0 + uniform(-0.12, 0.12) * strength           # > 1 zooms out (digit gets smaller)
    shear = uniform(-0.15, 0.15) * strength
    tx, ty = uniform(-0.12, 0.12) * strength, uniform(-0.12, 0.12) * strength  # in [-1, 1] grid units
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * cos
    theta[:, 0, 1] = scale * (-sin + shear * cos)
    theta[:, 1, 0] = scale * sin
    theta[:, 1, 1] = scale * (cos + shear * sin)
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, (b, 3, h, w), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def evaluate(model, x_u8: np.ndarray, y: np.ndarray, batch: int = 128):
    import torch
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(x_u8), batch):
            xb = torch.from_numpy(x_u8[i:i + batch]).permute(0, 3, 1, 2).float() / 255.0
            logits.append(model(xb))
    logits = torch.cat(logits).numpy()
    return float((logits.argmax(1) == y).mean()), logits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--base-batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-epochs", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "mobilevit", "data"))
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    import timm
    from PIL import Image
    from safetensors.numpy import save_file
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    sampler_mod = load_sampler_module()

    # ---- data ------------------------------------------------------------------------------------
    digits = load_digits()
    images8 = digits.images.astype(np.uint8)                # [1797, 8, 8], 0..16 (integers)
    assert np.array_equal(images8, digits.images) and images8.max() == 16
    labels = digits.target.astype(np.int64)
    all_idx = np.arange(len(labels))
    tr_idx, te_idx = train_test_split(all_idx, test_size=0.2, stratify=labels, random_state=SPLIT_SEED)
    tr_idx, te_idx = np.sort(tr_idx), np.sort(te_idx)
    base_u8 = upscale_digits(images8)                         # [1797, 64, 64, 3] uint8
    if not np.array_equal(base_u8, upscale_digits_torch(images8)):
        raise RuntimeError("numpy and torch bilinear upscaling disagree")
    x_train = torch.from_numpy(base_u8[tr_idx]).permute(0, 3, 1, 2).float() / 255.0
    y_train = torch.from_numpy(labels[tr_idx])
    x_held_u8, y_held = base_u8[te_idx], labels[te_idx]
    print(f"digits: {len(tr_idx)} train / {len(te_idx)} held-out, base {BASE}x{BASE}")

    # ---- multi-scale sampler -----------------------------------------------------------------------
    sampler_kwargs = dict(base_size=BASE, base_batch_size=args.base_batch, min_size=48, max_size=96,
                          n_scales=5, divisor=16, shuffle=True, seed=args.seed)
    sampler = sampler_mod.VariableBatchSampler(len(tr_idx), **sampler_kwargs)
    steps_per_epoch = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        steps_per_epoch.append(len(sampler))
    total_steps = sum(steps_per_epoch)
    warmup = max(1, int(round(args.warmup_epochs * total_steps / args.epochs)))
    print(f"sampler: {list(sampler.batch_tuples)}  ({total_steps} steps, warm-up {warmup})")

    # ---- model / optimiser -----------------------------------------------------------------------
    model = timm.create_model("mobilevit_xxs", num_classes=N_CLASSES, pretrained=False)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)      # no decay on BN/LN/bias, as cvnets
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    min_lr = args.lr * 0.01

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return min_lr + 0.5 * (args.lr - min_lr) * (1.0 + math.cos(math.pi * t))

    gen = torch.Generator().manual_seed(args.seed + 1)
    t0 = time.time()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        sampler.set_epoch(epoch)
        seen, loss_sum, correct = 0, 0.0, 0
        for batch in sampler:
            h, w = batch[0][0], batch[0][1]
            ids = torch.tensor([i for _, _, i in batch])
            xb = augment_resize(x_train[ids], h, w, gen)
            yb = y_train[ids]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(ids)
            loss_sum += float(loss.detach()) * len(ids)
            correct += int((logits.argmax(1) == yb).sum())
        msg = (f"epoch {epoch + 1:3d}/{args.epochs}  loss {loss_sum / seen:.4f}  train-acc {correct / seen:.4f}  "
               f"lr {lr_at(step - 1):.2e}  {time.time() - t0:6.1f}s")
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            acc, _ = evaluate(model, x_held_u8, y_held)
            msg += f"  held-out {acc:.4f}"
        print(msg, flush=True)
    train_seconds = time.time() - t0

    acc, logits = evaluate(model, x_held_u8, y_held)
    n_ok = int(round(acc * len(y_held)))
    print(f"PyTorch held-out accuracy at {BASE}x{BASE}: {acc:.4f} ({n_ok}/{len(y_held)}); "
          f"training {train_seconds:.1f}s")

    # ---- write ------------------------------------------------------------------------------------
    os.makedirs(args.out, exist_ok=True)
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    st_path = os.path.join(args.out, "default_model.safetensors")
    # One metadata entry only: safetensors writes the metadata map in hash order, so several keys
    # would make the file differ byte-wise between identical runs.  The rest lives in the JSON.
    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, st_path, metadata={"format": "pt"})
    os.chmod(st_path, 0o644)  # safetensors creates the file 0600; it ships in the package

    scales = [list(t) for t in sampler.batch_tuples]
    meta = {
        "architecture": "mobilevit_xxs",
        "num_classes": N_CLASSES,
        "id2label": {str(i): f"digit {i}" for i in range(N_CLASSES)},
        "image_size": BASE,
        "preprocess": {"resize_shortest": BASE, "crop": BASE, "interpolation": "bilinear",
                       "channel_order": "RGB", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                       "rescale": 1.0 / 255.0},
        "description": ("MobileViT-XXS trained from scratch on scikit-learn's 8x8 handwritten digits, "
                        "upscaled to 64x64 RGB: white digit on black. A demo model, not an ImageNet one."),
        "train": {
            "dataset": "sklearn.datasets.load_digits (1797 images, 8x8, gray levels 0..16)",
            "upscale": "x = digits8/16 -> bilinear 8x8->64x64, half-pixel centres (F.interpolate "
                       "align_corners=False, no antialias) -> uint8 rint(x*255) -> 3 channels",
            "split": "sklearn train_test_split(test_size=0.2, stratify=y)",
            "split_seed": SPLIT_SEED,
            "n_train": int(len(tr_idx)),
            "n_heldout": int(len(te_idx)),
            "epochs": args.epochs,
            "steps": total_steps,
            "sampler": {"name": "VariableBatchSampler", **{k: v for k, v in sampler_kwargs.items()}},
            "scales": scales,
            "optimizer": {"name": "AdamW", "lr": args.lr, "weight_decay": args.weight_decay,
                          "schedule": "linear warm-up + cosine", "warmup_steps": warmup, "min_lr": min_lr},
            "label_smoothing": 0.1,
            "augmentation": "random affine per image: rotation +-12 deg, scale +-12%, shear +-0.15, "
                            "shift +-6% of the side; bilinear resample to the sampled size",
            "seed": args.seed,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "threads": args.threads,
            "train_seconds": round(train_seconds, 1),
            "pytorch_heldout_accuracy": acc,
        },
    }
    with open(os.path.join(args.out, "default_model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    # The 64x64x3 images compress to ~1 MB, so the 8x8 originals are stored (~25 KB); the test
    # rebuilds the base images with upscale_digits' numpy recipe.
    np.savez_compressed(os.path.join(args.out, "heldout_digits.npz"),
                        digits8=images8[te_idx], labels=y_held.astype(np.uint8),
                        dataset_index=te_idx.astype(np.int16))

    sample_dir = os.path.join(args.out, "samples")
    os.makedirs(sample_dir, exist_ok=True)
    for old in os.listdir(sample_dir):
        if old.startswith("digit_") and old.endswith(".png"):
            os.remove(os.path.join(sample_dir, old))
    for d in range(N_CLASSES):
        i = int(np.flatnonzero(y_held == d)[0])
        Image.fromarray(x_held_u8[i], "RGB").save(os.path.join(sample_dir, f"digit_{d}_idx{i}.png"),
                                                  optimize=True)

    for name in ("default_model.safetensors", "default_model.json", "heldout_digits.npz"):
        print(f"  {name}: {os.path.getsize(os.path.join(args.out, name)) / 1024:.1f} KiB")
    print(f"  samples/: {len(os.listdir(sample_dir))} files, "
          f"{sum(os.path.getsize(os.path.join(sample_dir, n)) for n in os.listdir(sample_dir)) / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
