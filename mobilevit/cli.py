"""``mobilevit`` command line: batch prediction over files, folders and globs.

    mobilevit predict PATHS... [--weights FILE_OR_DIR] [--top-k 5] [--batch-size N]
                     [--threads N] [--output preds.jsonl|preds.csv [--resume]] [--multi-scale]
    mobilevit segment PATHS... --weights DIR --output DIR [--overlay]
    mobilevit info

With no PATHS and no --weights, the bundled default model classifies the
bundled sample images.  Every input gives exactly one output row (its top-k
labels and scores, or its error); rows are written as they are produced.
The exit code is non-zero only when no input could be processed.

Output rows are strict JSON / RFC 4180 CSV, each written whole and flushed.
File names that are not valid UTF-8 are written with each undecodable byte
as ``\\xNN`` (:func:`mobilevit.predictor.display_name`), the same in every
format.  SIGINT / SIGTERM stop the run with a one-line summary on stderr and
exit code 130 / 143; the output file then holds every row produced so far,
and ``--resume`` continues it: inputs already in the file (by ``input``) are
skipped, new rows appended, and a last line cut short by a killed run is
dropped and redone.
"""
from __future__ import annotations

import argparse
import collections
import csv
import glob
import io
import json
import os
import signal
import sys
from typing import Iterator, List, Optional, Tuple

from .predictor import MAX_THREADS, check_num_threads, display_name

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


def _csv_header(top_k: int) -> List[str]:
    header = ["input"]
    for i in range(1, top_k + 1):
        header += [f"label_{i}", f"score_{i}"]
    return header + ["error"]


def _lines(text: str) -> Iterator[str]:
    """``text`` cut after each "\\n" only (str.splitlines also cuts at \\r, \\x1c, U+2028, ...)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


class ResumeError(ValueError):
    """An existing output file cannot be continued."""


def read_existing(path: str, kind: str, top_k: int) -> Tuple["collections.Counter[str]", int, bool]:
    """The rows already in an output file: (count of each ``input``, byte length of the
    complete rows, whether a CSV header is there).  A last row without its line end (a run
    killed mid-write) is not counted, so it is cut off and redone."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", "surrogateescape")   # keeps a cut multi-byte character countable
    done: "collections.Counter[str]" = collections.Counter()
    good = 0                                            # chars of complete rows
    has_header = False
    if kind == "jsonl":
        for lineno, line in enumerate(_lines(text), 1):
            if not line.endswith("\n"):
                break                                   # cut short: dropped
            try:
                row = json.loads(line)
                name = row["input"]
                if not isinstance(name, str):
                    raise TypeError("input is not a string")
            except (ValueError, KeyError, TypeError) as e:
                raise ResumeError(f"cannot resume {path!r}: line {lineno} is not a prediction row "
                                  f"({type(e).__name__}: {e})") from None
            done[display_name(name)] += 1   # rows of older versions may hold raw surrogates
            good += len(line)
    else:
        pos = [0]

        def feed():
            for line in _lines(text):
                pos[0] += len(line)
                yield line

        # strict: end of data inside a quoted field (a row cut after an embedded newline) is an
        # error, not a short row
        reader = csv.reader(feed(), strict=True)
        header = _csv_header(top_k)
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                if pos[0] >= len(text):
                    break                               # cut short inside a quoted field: dropped
                raise ResumeError(f"cannot resume {path!r}: malformed CSV before character {pos[0]} ({e})") from None
            if pos[0] == 0 or text[pos[0] - 1] != "\n":
                break                                   # cut short: dropped
            if not has_header:
                if rec != header:
                    raise ResumeError(f"cannot resume {path!r}: its header {rec!r} does not match this run's "
                                      f"columns {header!r} (same --top-k needed)")
                has_header = True
            else:
                if len(rec) != len(header):
                    raise ResumeError(f"cannot resume {path!r}: row ending at character {pos[0]} has "
                                      f"{len(rec)} fields, expected {len(header)}")
                done[rec[0]] += 1
            good = pos[0]
    return done, len(text[:good].encode("utf-8", "surrogateescape")), has_header


class _Writer:
    """Rows to stdout, JSONL or CSV.  Each row is formatted first and written with one
    ``write`` + ``flush``, so the file always ends on a whole row."""

    def __init__(self, path, top_k, resume: bool = False):
        self.path, self.top_k = path, top_k
        self.kind = "stdout"
        self.skip: "collections.Counter[str]" = collections.Counter()
        if path:
            ext = os.path.splitext(path)[1].lower()
            self.kind = "csv" if ext == ".csv" else "jsonl"
            has_header = False
            if resume and os.path.exists(path):
                self.skip, keep, has_header = read_existing(path, self.kind, top_k)
                with open(path, "r+b") as f:
                    f.truncate(keep)
                self.f = open(path, "a", newline="", encoding="utf-8")
            else:
                self.f = open(path, "w", newline="", encoding="utf-8")
            if self.kind == "csv" and not has_header:
                self._emit(self._csv_line(_csv_header(top_k)))

    @staticmethod
    def _csv_line(cells) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(cells)
        return buf.getvalue()

    def _emit(self, text: str):
        self.f.write(text)
        self.f.flush()

    def write(self, row):
        name = display_name(row["input"])
        error = display_name(row["error"]) if row["error"] else None
        if self.kind == "stdout":
            if error:
                print(f"{name}\tERROR\t{error}", flush=True)
            else:
                preds = ", ".join(f"{p['label']} ({p['score']:.3f})" for p in row["predictions"])
                print(f"{name}\t{preds}", flush=True)
        elif self.kind == "jsonl":
            try:
                line = json.dumps({"input": name, "predictions": row["predictions"], "error": error},
                                  allow_nan=False)
            except ValueError:  # a NaN/Infinity would make the line invalid JSON
                line = json.dumps({"input": name, "predictions": [], "error": "non-finite value in row"})
            self._emit(line + "\n")
        else:
            cells = [name]
            for i in range(self.top_k):
                if i < len(row["predictions"]):
                    p = row["predictions"][i]
                    cells += [p["label"], f"{p['score']:.6f}"]
                else:
                    cells += ["", ""]
            self._emit(self._csv_line(cells + [error or ""]))

    def close(self):
        if self.kind != "stdout":
            self.f.close()


def _load_model(weights):
    from . import from_pretrained
    from .default import load_default_model
    if weights is None:
        return load_default_model()
    return from_pretrained(weights)


class _Stop(BaseException):
    """SIGINT / SIGTERM, raised in the main thread (a BaseException, so no ``except Exception``
    on the way turns it into an error row)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM raise :class:`_Stop`, except while a row is being written: then the
    signal is held until the row is complete."""

    def __init__(self):
        self.pending: Optional[int] = None
        self.writing = False
        self.saved = {}

    def _handler(self, signum, frame):
        if self.writing:
            self.pending = signum
            return
        raise _Stop(signum)

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        return False

    def write(self, writer, row):
        self.writing = True
        try:
            writer.write(row)
        finally:
            self.writing = False
        if self.pending is not None:
            raise _Stop(self.pending)


def cmd_predict(args) -> int:
    import mobilevit
    from .default import sample_images
    from .predictor import Predictor
    if args.resume and not args.output:
        print("mobilevit predict: --resume needs --output (the .jsonl/.csv file to continue)", file=sys.stderr)
        return 2
    if args.threads is not None:
        mobilevit.set_num_threads(args.threads)
    paths = args.paths or ([] if args.weights else sample_images())
    if not paths:
        print("mobilevit predict: no input paths given", file=sys.stderr)
        return 2
    ok = failed = skipped = 0
    where = f"{display_name(args.output)!r}" if args.output else "stdout"
    writer = None
    with _Signals() as sigs:
        try:
            try:
                model = _load_model(args.weights)
            except Exception as e:
                print(f"mobilevit predict: cannot load weights {args.weights!r}: {type(e).__name__}: {e}",
                      file=sys.stderr)
                return 2
            try:
                pred = Predictor(model, preset=args.preset, batch_size=args.batch_size, top_k=args.top_k,
                                 multi_scale=args.multi_scale, num_threads=args.threads)
            except ValueError as e:  # e.g. a preprocessing config no image could pass (crop_size 10**6)
                what = f"preset {args.preset!r}" if args.preset else "the checkpoint's preprocessing"
                print(f"mobilevit predict: cannot use {what}: {type(e).__name__}: {e}", file=sys.stderr)
                return 2
            files = list(expand_paths(paths))
            try:
                writer = _Writer(args.output, args.top_k, resume=args.resume)
            except (ResumeError, OSError) as e:
                print(f"mobilevit predict: {e}", file=sys.stderr)
                return 2
            if writer.skip:
                left = writer.skip.copy()
                todo = []
                for f in files:
                    key = display_name(f)
                    if left[key] > 0:
                        left[key] -= 1
                        skipped += 1
                    else:
                        todo.append(f)
                files = todo
            progress = not args.no_progress and len(files) >= 50 and (args.output is not None
                                                                       or not sys.stdout.isatty())
            for row in pred.predict(files, progress=progress, total=len(files)):
                sigs.write(writer, row)
                if row["error"]:
                    failed += 1
                else:
                    ok += 1
        except _Stop as stop:
            name = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}.get(stop.signum, str(stop.signum))
            print(f"mobilevit predict: interrupted by {name} after {ok + failed} rows ({ok} predicted, "
                  f"{failed} failed" + (f", {skipped} already there" if skipped else "")
                  + f"); {where} is complete up to its last row"
                  + ("; rerun with --resume to continue" if args.output else ""), file=sys.stderr)
            return 128 + stop.signum
        finally:
            if writer is not None:
                writer.close()
    print(f"mobilevit predict: {ok} predicted, {failed} failed"
          + (f", {skipped} already in the output" if skipped else "")
          + (f", rows in {args.output}" if args.output else ""), file=sys.stderr)
    return 0 if ok > 0 or (skipped and not failed) else 1


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
    if args.threads is not None:
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
            print(f"{display_name(path)}\t{display_name(os.path.join(args.output, stem + '_mask.png'))}",
                  flush=True)
            ok += 1
        except Exception as e:
            print(f"{display_name(path)}\tERROR\t{display_name(f'{type(e).__name__}: {e}')}", flush=True)
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


def _threads_arg(text: str) -> int:
    """--threads: an integer in 1..MAX_THREADS, the rule of mobilevit.set_num_threads."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer between 1 and {MAX_THREADS}, got {text!r}") from None
    try:
        return check_num_threads(value, "--threads")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--threads ", "", 1)) from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mobilevit", description="MobileViT on the CPU")
    sub = ap.add_subparsers(dest="command")
    p = sub.add_parser("predict", help="classify images (files, folders, globs)")
    p.add_argument("paths", nargs="*", help="image files, folders or globs (default: bundled samples)")
    p.add_argument("--weights", help="checkpoint file or model folder (default: bundled digits model)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=_threads_arg, default=None,
                   help=f"OpenMP threads, 1..{MAX_THREADS} (default: all cores / OMP_NUM_THREADS)")
    p.add_argument("--output", help="write rows to a .jsonl or .csv file (default: print)")
    p.add_argument("--resume", action="store_true",
                   help="continue an existing --output file: skip inputs already in it, append the rest")
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
    sg.add_argument("--threads", type=_threads_arg, default=None, help=f"OpenMP threads, 1..{MAX_THREADS}")
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
