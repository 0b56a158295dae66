"""``mobilevit`` command line: batch prediction over files, folders and globs.

    mobilevit predict PATHS... [--weights FILE_OR_DIR] [--top-k 5] [--batch-size N]
                     [--threads N] [--output preds.jsonl|preds.csv] [--multi-scale]
    mobilevit segment PATHS... --weights DIR --output DIR [--overlay]
    mobilevit info

With no PATHS and no --weights, the bundled default model classifies the
bundled sample images.  Every input gives exactly one output row (its top-k
labels and scores, or its error); rows are written as they are produced.
The exit code is non-zero only when no input could be processed.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
from typing import Iterator, List

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


def expand_paths(patterns: List[str]) -> Iterator[str]:
    """Files as given, folders walked recursively (image extensions, sorted),
    globs expanded.  A pattern that matches nothing is passed through, so it
    gets its own error row."""
    for p in patterns:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                        yield os.path.join(root, f)
        elif any(ch in p for ch in "*?[") and not os.path.exists(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                yield p
            for m in matches:
                if os.path.isdir(m):
                    yield from expand_paths([m])
                else:
                    yield m
        else:
            yield p


class _Writer:
    def __init__(self, path, top_k):
        self.path, self.top_k = path, top_k
        self.kind = "stdout"
        if path:
            ext = os.path.splitext(path)[1].lower()
            self.kind = "csv" if ext == ".csv" else "jsonl"
            self.f = open(path, "w", newline="", encoding="utf-8")
            if self.kind == "csv":
                self.csv = csv.writer(self.f)
                header = ["input"]
                for i in range(1, top_k + 1):
                    header += [f"label_{i}", f"score_{i}"]
                self.csv.writerow(header + ["error"])

    def write(self, row):
        if self.kind == "stdout":
            if row["error"]:
                print(f"{row['input']}\tERROR\t{row['error']}", flush=True)
            else:
                preds = ", ".join(f"{p['label']} ({p['score']:.3f})" for p in row["predictions"])
                print(f"{row['input']}\t{preds}", flush=True)
        elif self.kind == "jsonl":
            self.f.write(json.dumps({"input": row["input"], "predictions": row["predictions"],
                                     "error": row["error"]}) + "\n")
            self.f.flush()
        else:
            cells = [row["input"]]
            for i in range(self.top_k):
                if i < len(row["predictions"]):
                    p = row["predictions"][i]
                    cells += [p["label"], f"{p['score']:.6f}"]
                else:
                    cells += ["", ""]
            self.csv.writerow(cells + [row["error"] or ""])
            self.f.flush()

    def close(self):
        if self.kind != "stdout":
            self.f.close()


def _load_model(weights):
    from . import from_pretrained
    from .default import load_default_model
    if weights is None:
        return load_default_model()
    return from_pretrained(weights)


def cmd_predict(args) -> int:
    import mobilevit
    from .default import sample_images
    from .predictor import Predictor
    if args.threads:
        mobilevit.set_num_threads(args.threads)
    paths = args.paths or ([] if args.weights else sample_images())
    if not paths:
        print("mobilevit predict: no input paths given", file=sys.stderr)
        return 2
    try:
        model = _load_model(args.weights)
    except Exception as e:
        print(f"mobilevit predict: cannot load weights {args.weights!r}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    pred = Predictor(model, preset=args.preset, batch_size=args.batch_size, top_k=args.top_k,
                     multi_scale=args.multi_scale)
    files = list(expand_paths(paths))
    writer = _Writer(args.output, args.top_k)
    ok = failed = 0
    progress = not args.no_progress and len(files) >= 50 and (args.output is not None or not sys.stdout.isatty())
    try:
        for row in pred.predict(files, progress=progress, total=len(files)):
            writer.write(row)
            if row["error"]:
                failed += 1
            else:
                ok += 1
    finally:
        writer.close()
    print(f"mobilevit predict: {ok} predicted, {failed} failed"
          + (f", rows in {args.output}" if args.output else ""), file=sys.stderr)
    return 0 if ok > 0 else 1


def _palette(n: int):
    """PASCAL VOC-style colour map (bit-interleaved label index)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def cmd_segment(args) -> int:
    import numpy as np
    from PIL import Image

    import mobilevit
    from .imageio import load_image
    from .predictor import preset_for
    if args.threads:
        mobilevit.set_num_threads(args.threads)
    try:
        model = mobilevit.from_pretrained(args.weights)
    except Exception as e:
        print(f"mobilevit segment: cannot load weights {args.weights!r}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if model.cfg.head != "deeplabv3":
        print("mobilevit segment: the weights are not a segmentation model (no DeepLabv3 head)", file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    preset = preset_for(model) if args.preset is None else args.preset
    pal = _palette(model.num_classes)
    ok = failed = 0
    for path in expand_paths(args.paths):
        stem = os.path.splitext(os.path.basename(path))[0]
        try:
            img = load_image(path)
            mask = model.segment(img, preset=preset)
            out = Image.fromarray(mask.astype(np.uint8), mode="P")
            out.putpalette(pal)
            out.save(os.path.join(args.output, stem + "_mask.png"))
            if args.overlay:
                color = out.convert("RGB")
                Image.blend(img, color, 0.5).save(os.path.join(args.output, stem + "_overlay.png"))
            print(f"{path}\t{os.path.join(args.output, stem + '_mask.png')}", flush=True)
            ok += 1
        except Exception as e:
            print(f"{path}\tERROR\t{type(e).__name__}: {e}", flush=True)
            failed += 1
    print(f"mobilevit segment: {ok} segmented, {failed} failed", file=sys.stderr)
    return 0 if ok > 0 else 1


def cmd_info(args) -> int:
    import mobilevit
    from . import _C
    print(f"mobilevit {mobilevit.__version__}")
    print(f"isa: {mobilevit.get_isa()} (available: {', '.join(mobilevit.available_isas())})")
    print(f"threads: {mobilevit.get_num_threads()} (OpenMP: {'yes' if _C.has_openmp() else 'no'})")
    print(f"models: {', '.join(mobilevit.list_models())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mobilevit", description="MobileViT on the CPU")
    sub = ap.add_subparsers(dest="command")
    p = sub.add_parser("predict", help="classify images (files, folders, globs)")
    p.add_argument("paths", nargs="*", help="image files, folders or globs (default: bundled samples)")
    p.add_argument("--weights", help="checkpoint file or model folder (default: bundled digits model)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="OpenMP threads (default: all cores / OMP_NUM_THREADS)")
    p.add_argument("--output", help="write rows to a .jsonl or .csv file (default: print)")
    p.add_argument("--multi-scale", action="store_true", help="bucket images by resolution (paper's scales)")
    p.add_argument("--preset", help="preprocessing preset (hf, timm, cvnets, ...); default: the checkpoint's")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)
    sg = sub.add_parser("segment", help="semantic segmentation masks (DeepLabv3 checkpoints)")
    sg.add_argument("paths", nargs="+", help="image files, folders or globs")
    sg.add_argument("--weights", required=True, help="DeepLabv3 checkpoint file or model folder")
    sg.add_argument("--output", required=True, help="folder for <name>_mask.png (palette PNG)")
    sg.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    sg.add_argument("--preset", help="preprocessing preset; default: the checkpoint's")
    sg.add_argument("--threads", type=int, default=0)
    sg.set_defaults(func=cmd_segment)
    i = sub.add_parser("info", help="build and CPU information")
    i.set_defaults(func=cmd_info)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "command", None):
        ap.print_help()
        return 2
    if getattr(args, "top_k", 1) < 1 or getattr(args, "batch_size", 1) < 1:
        ap.error("--top-k and --batch-size must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
