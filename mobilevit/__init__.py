"""mobilevit: Apple's MobileViT networks on the CPU (C kernels + OpenMP), no torch at run time.

Entry points
------------
predict(image_or_path_or_list, model=None, top_k=5)
    Classify one image or a list (paths, bytes, PIL images, uint8 HWC arrays) with the
    checkpoint's preprocessing; returns a Prediction row (``path``, ``labels``, ``scores``,
    ``class_ids``, ``error``) or a list of them; DeepLabv3 models give Segmentation results.
    Both display as pictures in a notebook.  ``model=None`` is the bundled digits model.
from_pretrained(source, model_name=None, ...)
    Load weights.  ``source`` is an HF ``save_pretrained`` folder (config.json +
    model.safetensors / pytorch_model.bin, with preprocessor_config.json), timm's
    ``save_for_hf`` folder, a folder written by ``model.save``, a single checkpoint file
    (``torch.save`` zip or legacy, ``.safetensors``; the format is detected from its bytes) with
    timm, HF transformers or ml-cvnets names, optionally nested in a training checkpoint, or an
    in-memory mapping of numpy arrays / torch tensors.  Nothing from a file is executed and torch
    is not needed.  The variant is inferred from the tensor shapes; ``model_name`` forces it.
create_model(name, num_classes=None, ...)
    A randomly initialised network by name (``list_models()``: mobilevit_xxs/_xs/_s,
    mobilevitv2_050 ... _200; ``deeplabv3_<backbone>`` for segmentation).
MobileViT
    The model: ``model(x)`` on a float32 NCHW batch gives logits; ``model.predict(images)``,
    ``model.segment(image)``, ``model.forward_features(x)``, ``model.summary()``,
    ``model.save(folder)``, ``model.load_state_dict(sd)``.
Predictor(model, preset=None, batch_size=16, top_k=5)
    Streaming batch prediction over many inputs (one row per input, in order; a bad file is an
    error row).  ``mobilevit predict`` (the CLI), ``mobilevit.dask.predict`` and
    ``mobilevit.ray.MobileViTPredictor`` write the same rows (``predictor.SCHEMA_VERSION``).
set_num_threads(n) / set_isa("ref"|"avx2"|"avx512"|"neon"|"auto")
    Threads for every kernel; force a kernel path.
build_info()
    What this binary was built with (compiler, OpenMP or single-threaded) and what it can run.

    >>> import mobilevit
    >>> row = mobilevit.predict("digit.png")            # bundled default model
    >>> row["labels"][0], row["scores"][0]
    >>> model = mobilevit.from_pretrained("path/to/hf_folder")
    >>> logits = model(x)                               # x: float32 NCHW, any H, W >= 32
"""
try:
    from . import _C
except ImportError as e:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "mobilevit's C extension (mobilevit._C) is not built here: this is probably the source "
        "folder shadowing the installed package (python -m pytest puts the current directory first on "
        "sys.path). Run `pytest` instead of `python -m pytest`, or build in place with "
        "`pip install -e .` / `python setup.py build_ext --inplace`.") from e
from . import ops
from .config import MODEL_CONFIGS, MobileViTConfig, get_config, list_models
from .model import LoadResult, MobileViT, StateDictError, create_model, set_default_memory_limit
from .hub import from_pretrained
from .predictor import Predictor, predict
from .checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint

from ._version import __version__  # noqa: E402

_ISA_NAMES = ("ref", "avx2", "avx512", "neon")


def set_num_threads(n: int) -> None:
    """Threads used by every kernel (default: OMP_NUM_THREADS, else all cores);
    an int in 1..1024.  Per-call ``num_threads=`` follows the same rule.

    A build without OpenMP (``build_info()["openmp"]`` is False) accepts the
    same values, so code written for either build runs on both, but runs every
    call on one thread: ``n > 1`` gives a RuntimeWarning and
    ``get_num_threads()`` stays 1."""
    from .threads import check_num_threads
    n = check_num_threads(n)
    _C.set_num_threads(n)
    if n > 1 and not _C.has_openmp():
        import warnings
        warnings.warn(f"set_num_threads({n}): this mobilevit build has no OpenMP and runs single-threaded "
                      "(rebuild with an OpenMP compiler: README, Portability)", RuntimeWarning, stacklevel=2)


def get_num_threads() -> int:
    """Threads a call uses when it names none (1 in a forked child)."""
    return _C.get_num_threads()


def build_info() -> dict:
    """How this copy of the C core was built and what it can run here:
    ``version``, ``compiler`` (e.g. "gcc 12.2.0", "clang 14.0.6"),
    ``openmp`` (bool), ``openmp_version`` (e.g. "4.5", from the compiler's
    ``_OPENMP`` date; None without OpenMP), ``threading`` ("OpenMP" or
    "single-threaded"), ``max_threads`` (what set_num_threads can make a call
    use), ``isa`` (the kernel path in use) and ``available_isas``."""
    c = _C.build_info()
    omp = c["openmp"] > 0
    versions = {200203: "2.0", 200505: "2.5", 200805: "3.0", 201107: "3.1", 201307: "4.0",
                201511: "4.5", 201811: "5.0", 202011: "5.1", 202111: "5.2", 202411: "6.0"}
    return {"version": __version__, "compiler": c["compiler"], "openmp": omp,
            "openmp_version": versions.get(c["openmp"], str(c["openmp"])) if omp else None,
            "threading": "OpenMP" if omp else "single-threaded",
            "max_threads": _C.MAX_THREADS if omp else 1,
            "isa": get_isa(), "available_isas": available_isas()}


def set_isa(isa: str = "auto") -> None:
    """Force a kernel path: "ref" (scalar reference), "avx2", "avx512" (x86-64),
    "neon" (AArch64), or "auto" (the best this CPU supports, the default)."""
    if isa == "auto":
        isa = _C.best_isa()
    if isa not in _ISA_NAMES:
        raise ValueError(f"unknown ISA {isa!r}; choose one of auto, {', '.join(_ISA_NAMES)}")
    if isa not in _C.available_isas():
        raise ValueError(f"ISA {isa!r} is not supported by this CPU (available: {', '.join(_C.available_isas())})")
    _C.set_isa(isa)


def get_isa() -> str:
    """The kernel path calls use now: "ref", "avx2", "avx512" or "neon"."""
    return _C.get_isa()


def available_isas() -> list:
    """The kernel paths this CPU can run ("ref" always), for set_isa."""
    return _C.available_isas()


def _isa_from_environment() -> None:
    """MOBILEVIT_ISA=ref|avx2|avx512|neon|auto forces a kernel path for the whole
    process (as set_isa does), e.g. to run a test suite on the AVX2 path of an
    AVX-512 machine.  A value this CPU cannot run is an error at import, not a
    silent fallback."""
    import os
    want = os.environ.get("MOBILEVIT_ISA", "").strip().lower()
    if want:
        try:
            set_isa(want)
        except ValueError as e:
            raise ImportError(f"MOBILEVIT_ISA={want!r}: {e}") from None


_isa_from_environment()


__all__ = ["predict", "set_default_memory_limit", "create_model", "from_pretrained", "Predictor", "load_checkpoint", "CheckpointError", "UnsafeCheckpointError", "list_models", "get_config", "MobileViT", "MobileViTConfig", "MODEL_CONFIGS",
           "LoadResult", "StateDictError", "ops", "set_num_threads", "get_num_threads", "set_isa", "get_isa",
           "available_isas", "build_info"]
