"""``mobilevit`` command line: batch prediction over files, folders and globs.

    mobilevit predict [PATHS...] [--weights FILE_OR_DIR] [--preset NAME] [--top-k 5]
                     [--batch-size N] [--threads N] [--multi-scale]
                     [--output FILE [--format jsonl|csv] [--resume]] [--no-progress]
    mobilevit segment PATHS... --weights FILE_OR_DIR --output DIR [--overlay] [--preset NAME]
    mobilevit info
    mobilevit --version

With no PATHS and no --weights, the bundled default model classifies the
bundled sample images.  Every input gives exactly one output row (see
:data:`mobilevit.predictor.ROW_FIELDS`: ``path``, ``labels``, ``scores``,
``class_ids``, ``error``); rows are written as they are produced.  A first
line on stderr says which model, weights and preprocessing ran.  The exit
code is 0 when some input was predicted, 1 when none could be, 2 for a usage
error (one line on stderr).

Output rows are strict JSON / RFC 4180 CSV, each written whole and flushed.
A JSONL file starts with one metadata line (``"schema_version"``, model,
weights, preset, top_k); a CSV file with its header
(``path,label_1,score_1,class_id_1,...,error``).  File names that are not
valid UTF-8 are written with each undecodable byte as ``\\xNN``
(:func:`mobilevit.predictor.display_name`), the same in every format.
SIGINT / SIGTERM stop the run with a one-line summary on stderr and exit code
130 / 143; the output file then holds every row produced so far, and
``--resume`` continues it: inputs already in the file (by ``path``) are
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

from .predictor import MAX_THREADS, SCHEMA_VERSION, check_num_threads, display_name

#: output formats by file extension (anything else needs --format)
FORMAT_BY_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


def expand_paths(patterns: List[str], empty: Optional[List[str]] = None) -> Iterator[str]:
    """Files as given, folders walked recursively (image extensions, sorted),
    globs expanded.  A pattern that matches nothing is passed through, so it
    gets its own error row; a folder with no image in it is appended to
    ``empty`` (when given) instead."""
    for p in patterns:
        if os.path.isdir(p):
            found = False
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                        found = True
                        yield os.path.join(root, f)
            if not found and empty is not None:
                empty.append(p)
        elif any(ch in p for ch in "*?[") and not os.path.exists(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                yield p
            for m in matches:
                if os.path.isdir(m):
                    yield from expand_paths([m], empty)
                else:
                    yield m
        else:
            yield p


def _csv_header(top_k: int) -> List[str]:
    header = ["path"]
    for i in range(1, top_k + 1):
        header += [f"label_{i}", f"score_{i}", f"class_id_{i}"]
    return header + ["error"]


def metadata(model, weights, preset, top_k: int, label_source: Optional[str] = None) -> dict:
    """The first line of a JSONL output: schema version and what ran.  ``label_source`` (the
    Predictor's: "checkpoint", "assumed: ImageNet-1k", "placeholders", "given") becomes
    ``"label_source"`` and ``"labels_assumed"`` (True when the names are ImageNet's, assumed
    for a 1000-class checkpoint that carries none)."""
    import mobilevit
    meta = {"schema": "mobilevit.predictions", "schema_version": SCHEMA_VERSION,
            "mobilevit_version": mobilevit.__version__, "model": model.cfg.name,
            "num_classes": model.num_classes, "weights": _weights_name(weights),
            "preset": getattr(preset, "name", None) or "checkpoint", "top_k": top_k}
    if label_source is not None:
        meta["label_source"] = label_source
        meta["labels_assumed"] = label_source.startswith("assumed")
    return meta


def _weights_name(weights) -> str:
    return "bundled default (digits)" if weights is None else display_name(os.fspath(weights))


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
            if lineno == 1:                             # the metadata line
                try:
                    meta = json.loads(line)
                except ValueError:
                    meta = None
                if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
                    found = meta.get("schema_version", 1) if isinstance(meta, dict) else "unknown"
                    raise ResumeError(f"cannot resume {path!r}: it was not written with output schema "
                                      f"{SCHEMA_VERSION} (its first line is not this version's metadata line; "
                                      f"schema {found}): write a new file")
                if meta.get("top_k") != top_k:
                    raise ResumeError(f"cannot resume {path!r}: its header says top_k={meta.get('top_k')}, this "
                                      f"run has --top-k {top_k} (same --top-k needed)")
                has_header = True
                good += len(line)
                continue
            try:
                row = json.loads(line)
                name = row["path"]
                if not isinstance(name, str):
                    raise TypeError("path is not a string")
            except (ValueError, KeyError, TypeError) as e:
                raise ResumeError(f"cannot resume {path!r}: line {lineno} is not a prediction row "
                                  f"({type(e).__name__}: {e})") from None
            done[display_name(name)] += 1
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
    """Rows to stdout (text, or ``fmt`` jsonl/csv) or to a JSONL / CSV file.  Each row is
    formatted first and written with one ``write`` + ``flush``, so the file always ends on a
    whole row.  ``meta``: the JSONL metadata line (written first in a new file)."""

    def __init__(self, path, top_k, resume: bool = False, fmt: Optional[str] = None, meta: Optional[dict] = None):
        self.path, self.top_k = path, top_k
        self.kind = fmt or "text"
        self.skip: "collections.Counter[str]" = collections.Counter()
        self.f = sys.stdout
        has_header = False
        if path:
            self.kind = fmt or output_format(path)
            if resume and os.path.exists(path):
                self.skip, keep, has_header = read_existing(path, self.kind, top_k)
                with open(path, "r+b") as f:
                    f.truncate(keep)
                self.f = open(path, "a", newline="", encoding="utf-8")
            else:
                self.f = open(path, "w", newline="", encoding="utf-8")
        if not has_header:
            if self.kind == "csv":
                self._emit(self._csv_line(_csv_header(top_k)))
            elif self.kind == "jsonl":
                self._emit(json.dumps(meta or {"schema_version": SCHEMA_VERSION, "top_k": top_k}) + "\n")

    @staticmethod
    def _csv_line(cells) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(cells)
        return buf.getvalue()

    def _emit(self, text: str):
        self.f.write(text)
        self.f.flush()

    def write(self, row):
        name = display_name(row["path"]) if row["path"] is not None else f"<input #{row['index']}>"
        error = display_name(row["error"]) if row["error"] else None
        labels, scores, ids = row["labels"], row["scores"], row["class_ids"]
        if error:
            labels, scores, ids = [], [], []
        if self.kind == "text":
            if error:
                text = f"{name}\tERROR\t{error}"
            else:
                text = name + "\t" + ", ".join(f"{lab} ({s:.3f})" for lab, s in zip(labels, scores))
            self._emit(text + "\n")
        elif self.kind == "jsonl":
            try:
                line = json.dumps({"path": name, "labels": labels, "scores": scores, "class_ids": ids,
                                   "error": error}, allow_nan=False)
            except ValueError:  # a NaN/Infinity would make the line invalid JSON
                line = json.dumps({"path": name, "labels": [], "scores": [], "class_ids": [],
                                   "error": "non-finite value in row"})
            self._emit(line + "\n")
        else:
            cells = [name]
            for i in range(self.top_k):
                if i < len(labels):
                    cells += [labels[i], f"{scores[i]:.6f}", str(ids[i])]
                else:
                    cells += ["", "", ""]
            self._emit(self._csv_line(cells + [error or ""]))

    def close(self):
        if self.f is not sys.stdout:
            self.f.close()


def output_format(path: str) -> str:
    """The format of an output file from its extension (:data:`FORMAT_BY_EXT`); ValueError
    when the extension does not say (then ``--format`` is needed)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMAT_BY_EXT:
        raise ValueError(f"cannot tell the output format from {display_name(path)!r}: name it .jsonl or .csv, "
                         f"or pass --format jsonl|csv")
    return FORMAT_BY_EXT[ext]


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


def _usage_error(command: str, message: str) -> int:
    """A usage error found after parsing: one line on stderr, exit code 2."""
    print(f"mobilevit {command}: error: {message}", file=sys.stderr)
    return 2


def _check_output_file(path: str) -> Optional[str]:
    """Why ``path`` cannot be written as an output file, or None."""
    if os.path.isdir(path):
        return f"--output {display_name(path)!r} is a folder; give a file name (.jsonl or .csv)"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--output {display_name(path)!r}: folder {display_name(parent)!r} does not exist"
    return None


def row_names(files: List[str]) -> List[str]:
    """The ``path`` written for each input: as given (relative paths stay relative), except the
    bundled sample images, which are named ``samples/<file>`` instead of their site-packages path."""
    from .default import SAMPLES_DIR
    root = os.path.abspath(SAMPLES_DIR)
    out = []
    for f in files:
        a = os.path.abspath(f)
        out.append(os.path.join("samples", os.path.relpath(a, root)) if os.path.dirname(a) == root else f)
    return out


def _describe(command: str, model, weights, preset, extra: str = "") -> str:
    import mobilevit
    size = "x".join(str(v) for v in (preset.output_size or ())) or "native size"
    return (f"mobilevit {command}: model {model.cfg.name} ({model.num_classes} classes), weights "
            f"{_weights_name(weights)}, preprocessing {getattr(preset, 'name', None) or 'from the checkpoint'} ({size}){extra}, "
            f"{mobilevit.get_num_threads()} threads, isa {mobilevit.get_isa()}")


def _no_images(command: str, empty: List[str]) -> None:
    for d in empty:
        print(f"mobilevit {command}: no images found in {display_name(d)!r} "
              f"(looked for {', '.join(sorted(IMAGE_EXTS))})", file=sys.stderr)


def cmd_predict(args) -> int:
    """``mobilevit predict``: one row per input to stdout or ``--output``."""
    import mobilevit
    from .default import sample_images
    from .predictor import Predictor
    if args.resume and not args.output:
        return _usage_error("predict", "--resume needs --output (the .jsonl/.csv file to continue)")
    fmt = args.format
    if args.output:
        problem = _check_output_file(args.output)
        if problem:
            return _usage_error("predict", problem)
        if fmt is None:
            try:
                fmt = output_format(args.output)
            except ValueError as e:
                return _usage_error("predict", str(e))
    if args.threads is not None:
        mobilevit.set_num_threads(args.threads)
    paths = args.paths or ([] if args.weights else sample_images())
    if not paths:
        return _usage_error("predict", "no input paths given")
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
            empty: List[str] = []
            files = list(expand_paths(paths, empty))
            _no_images("predict", empty)
            if not files:
                print("mobilevit predict: nothing to predict", file=sys.stderr)
                return 1
            try:
                writer = _Writer(args.output, args.top_k, resume=args.resume, fmt=fmt,
                                 meta=metadata(model, args.weights, pred.preset, args.top_k, pred.label_source))
            except (ResumeError, OSError) as e:
                print(f"mobilevit predict: {e}", file=sys.stderr)
                return 2
            names = row_names(files)
            if writer.skip:
                left = writer.skip.copy()
                todo = []
                for f, n in zip(files, names):
                    key = display_name(n)
                    if left[key] > 0:
                        left[key] -= 1
                        skipped += 1
                    else:
                        todo.append((f, n))
                files, names = [f for f, _ in todo], [n for _, n in todo]
            assumed = ("; class names ASSUMED: ImageNet-1k (the checkpoint carries none; pass a checkpoint "
                       "with id2label / label_names to change them)" if pred.labels_assumed else "")
            print(_describe("predict", model, args.weights, pred.preset, f", top-{args.top_k}")
                  + f"; {len(files)} inputs -> {where}" + assumed, file=sys.stderr, flush=True)
            progress = not args.no_progress and len(files) >= 50 and (args.output is not None
                                                                       or not sys.stdout.isatty())
            for row in pred.predict(files, progress=progress, total=len(files), names=names):
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


def mask_names(paths: List[str]) -> List[str]:
    """A distinct output stem for each input of ``mobilevit segment``: the file's stem
    (``img.png`` -> ``img``); when two inputs share it (``img.bmp`` and ``img.webp``, or
    ``a/img.png`` and ``b/img.png``) the later ones add their extension (``img_webp``), then a
    counter (``img_png_2``).  Compared case-insensitively (case-insensitive file systems)."""
    used = set()
    out = []
    for p in paths:
        base = os.path.basename(p)
        stem, ext = os.path.splitext(base)
        candidates = [stem, f"{stem}_{ext.lstrip('.')}" if ext else stem]
        name = next((c for c in candidates if c.lower() not in used), None)
        n = 2
        while name is None:
            c = f"{candidates[-1]}_{n}"
            name = c if c.lower() not in used else None
            n += 1
        used.add(name.lower())
        out.append(name)
    return out


def cmd_segment(args) -> int:
    """``mobilevit segment``: a palette PNG mask (and optionally an overlay) per input."""
    import numpy as np
    from PIL import Image

    import mobilevit
    from .imageio import load_image
    from .notebook import palette
    from .predictor import preset_for
    from .preprocess import Preprocess
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        return _usage_error("segment", f"--output {display_name(args.output)!r} is a file; give a folder")
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
    preset = preset_for(model) if args.preset is None else Preprocess.from_name(args.preset)
    empty: List[str] = []
    files = list(expand_paths(args.paths, empty))
    _no_images("segment", empty)
    if not files:
        print("mobilevit segment: nothing to segment", file=sys.stderr)
        return 1
    os.makedirs(args.output, exist_ok=True)
    print(_describe("segment", model, args.weights, preset) + f"; {len(files)} inputs -> "
          f"{display_name(args.output)!r}", file=sys.stderr, flush=True)
    pal = palette()
    ok = failed = 0
    for path, name, stem in zip(files, row_names(files), mask_names(files)):
        try:
            img = load_image(path)
            mask = model.segment(img, preset=preset)
            out = Image.fromarray(mask.astype(np.uint8), mode="P")
            out.putpalette(pal)
            mask_path = os.path.join(args.output, stem + "_mask.png")
            out.save(mask_path)
            if args.overlay:
                color = out.convert("RGB")
                Image.blend(img, color, 0.5).save(os.path.join(args.output, stem + "_overlay.png"))
            print(f"{display_name(name)}\t{display_name(mask_path)}", flush=True)
            ok += 1
        except Exception as e:
            print(f"{display_name(name)}\tERROR\t{display_name(f'{type(e).__name__}: {e}')}", flush=True)
            failed += 1
    print(f"mobilevit segment: {ok} segmented, {failed} failed", file=sys.stderr)
    return 0 if ok > 0 else 1


def model_names() -> List[str]:
    """Every name :func:`mobilevit.create_model` builds: the backbones of
    :func:`mobilevit.list_models` and ``deeplabv3_<backbone>`` for each."""
    import mobilevit
    return list(mobilevit.list_models(segmentation=True))


def cmd_info(args) -> int:
    """``mobilevit info``: version, kernel path, threads, model names."""
    import mobilevit
    print(f"mobilevit {mobilevit.__version__}")
    print(f"isa: {mobilevit.get_isa()} (available: {', '.join(mobilevit.available_isas())})")
    b = mobilevit.build_info()
    omp = f"yes, version {b['openmp_version']}" if b["openmp"] else "no (single-threaded)"
    print(f"threads: {mobilevit.get_num_threads()} (OpenMP: {omp})")
    print(f"compiler: {b['compiler']}")
    print(f"models: {', '.join(model_names())}")
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


def _positive_arg(text: str) -> int:
    """--top-k / --batch-size: an integer >= 1."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _preset_arg(text: str) -> str:
    """--preset: a name of :data:`mobilevit.preprocess.PRESETS`."""
    from .preprocess import PRESETS
    key = text.lower().replace("-", "_")
    if key not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose one of {', '.join(sorted(PRESETS))}")
    return key


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``mobilevit predict: error: ... (see --help)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``mobilevit`` argument parser (subcommands predict, segment, info)."""
    from ._version import __version__
    ap = _Parser(prog="mobilevit", description="MobileViT on the CPU: classify or segment images.")
    ap.add_argument("--version", action="version", version=f"mobilevit {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="{predict,segment,info}",
                            help="what to do (mobilevit COMMAND --help for its options)")
    p = sub.add_parser("predict", help="classify images (files, folders, globs)",
                       description="Classify images: one row per input (path, labels, scores, class_ids, error).")
    p.add_argument("paths", nargs="*", help="image files, folders (walked recursively) or globs "
                                            "(default: the bundled sample digits)")
    p.add_argument("--weights", help="checkpoint file or model folder (default: the bundled digits model)")
    p.add_argument("--top-k", type=_positive_arg, default=5, metavar="K", help="classes per row (default: 5)")
    p.add_argument("--batch-size", type=_positive_arg, default=16, metavar="N",
                   help="images per network call (default: 16)")
    p.add_argument("--threads", type=_threads_arg, default=None, metavar="N",
                   help=f"OpenMP threads, 1..{MAX_THREADS} (default: all cores / OMP_NUM_THREADS)")
    p.add_argument("--output", metavar="FILE",
                   help="write rows to FILE: .jsonl (a metadata line, then one JSON row per input) or .csv "
                        "(default: text on stdout)")
    p.add_argument("--format", choices=("jsonl", "csv"),
                   help="output format when --output's extension does not say, or to print JSONL/CSV on stdout")
    p.add_argument("--resume", action="store_true",
                   help="continue an existing --output file: skip inputs already in it, append the rest")
    p.add_argument("--multi-scale", action="store_true",
                   help="bucket images by resolution (the paper's scales) instead of one input size")
    p.add_argument("--preset", type=_preset_arg, metavar="NAME",
                   help="preprocessing preset: hf, timm, cvnets, timm_v2, cvnets_v2 (default: the checkpoint's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown for 50+ inputs when "
                                                              "rows go to a file or a pipe)")
    p.set_defaults(func=cmd_predict)
    sg = sub.add_parser("segment", help="semantic segmentation masks (DeepLabv3 checkpoints)",
                        description="Write a palette PNG label mask per input image.")
    sg.add_argument("paths", nargs="+", help="image files, folders (walked recursively) or globs")
    sg.add_argument("--weights", required=True, help="DeepLabv3 checkpoint file or model folder")
    sg.add_argument("--output", required=True, metavar="DIR",
                    help="folder for <name>_mask.png (created if missing; names made unique)")
    sg.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png (mask over the image)")
    sg.add_argument("--preset", type=_preset_arg, metavar="NAME",
                    help="preprocessing preset (hf, timm, cvnets, ...); default: the checkpoint's")
    sg.add_argument("--threads", type=_threads_arg, default=None, metavar="N",
                    help=f"OpenMP threads, 1..{MAX_THREADS} (default: all cores / OMP_NUM_THREADS)")
    sg.set_defaults(func=cmd_segment)
    i = sub.add_parser("info", help="version, kernel path (ISA), threads and model names",
                       description="Print the version, the kernel path (ISA), threads and the model names.")
    i.set_defaults(func=cmd_info)
    return ap


def main(argv=None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "command", None):
        ap.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
