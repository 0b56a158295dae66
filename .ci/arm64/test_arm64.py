"""Emulated side of the arm64 check: the aarch64 build of mobilevit._C under
qemu-aarch64, numpy only, compared to what make_refs.py recorded on the x86
host (PyTorch's outputs and our x86 "ref" ISA's).  MV_ARM64_REFS names the
folder of the .npz files.  Correctness only: nothing here is timed.

Every op case and every network runs on both aarch64 paths, "neon" (the
default) and "ref": each against PyTorch and against x86 ref (1e-4 x
max(1, max|ref|), the NaN / Inf positions equal), neon against the aarch64
ref on the spot, and 1 vs 2 threads bit for bit.  The aarch64 ref and the
x86 ref are the same C compiled without FP contraction on both (setup.py's
-ffp-contract=off on AArch64): they must give the same bits, ops and whole
networks (with gcc's default contraction they differed by up to ~1e-5)."""
import os
import platform

import numpy as np
import pytest

import cases
import mobilevit

REFS = os.environ["MV_ARM64_REFS"]
ISAS = ["neon", "ref"]
OPS = np.load(os.path.join(REFS, "ops.npz"))


def close(what, ours, ref):
    err, scale = cases.max_err(ours, ref)
    print(f"{what}: max abs diff {err:.2e} (limit {cases.TOL * scale:.2e})")
    assert err <= cases.TOL * scale, f"{what}: max abs diff {err:.3e} > {cases.TOL:g} x {scale:.3g}"


def test_platform_and_isas():
    assert platform.machine() == "aarch64"
    isas = mobilevit.available_isas()
    print("available_isas:", isas, "get_isa:", mobilevit.get_isa(), "best_isa:", mobilevit._C.best_isa())
    assert isas == ["ref", "neon"] and mobilevit._C.best_isa() == "neon"
    mobilevit.set_isa("ref")
    assert mobilevit.get_isa() == "ref"
    mobilevit.set_isa("neon")
    assert mobilevit.get_isa() == "neon"
    mobilevit.set_isa("auto")
    assert mobilevit.get_isa() == "neon"
    for x86 in ("avx2", "avx512"):
        with pytest.raises(ValueError, match="not supported by this CPU"):
            mobilevit.set_isa(x86)
        with pytest.raises(ValueError, match=f"'{x86}' is not available"):
            mobilevit.ops.relu(np.zeros(3, np.float32), isa=x86)


def _ours(name, isa, nth):
    a = cases.op_inputs()[name]
    return cases.run_ours(mobilevit, name, a, isa=isa) if nth is None else \
        _with_threads(nth, lambda: cases.run_ours(mobilevit, name, a, isa=isa))


def _with_threads(n, fn):
    old = mobilevit.get_num_threads()
    mobilevit.set_num_threads(n)
    try:
        return fn()
    finally:
        mobilevit.set_num_threads(old)


@pytest.mark.parametrize("name", list(cases.op_inputs()))
@pytest.mark.parametrize("isa", ISAS)
def test_op(name, isa):
    y1, y2 = _ours(name, isa, 1), _ours(name, isa, 2)
    np.testing.assert_array_equal(y1, y2, err_msg=f"op {name} {isa}: 1 and 2 threads differ")
    close(f"op {name} {isa} vs torch", y1, OPS[f"torch/{name}"])
    close(f"op {name} {isa} vs x86 ref", y1, OPS[f"x86ref/{name}"])
    if isa == "ref":
        np.testing.assert_array_equal(y1, OPS[f"x86ref/{name}"], err_msg=f"op {name}: aarch64 ref != x86 ref")
    else:
        close(f"op {name} {isa} vs aarch64 ref", y1, _ours(name, "ref", None))


def test_fast_op_cases_reach_neon():
    """The neon kernels really run: on a case of every fast family neon and ref
    differ somewhere in the last bits (summation orders and exp differ), so a
    table that silently fell back to ref would show up here."""
    differ = [n for n in cases.FAST_OPS if not np.array_equal(_ours(n, "neon", None), _ours(n, "ref", None))]
    print("neon != ref bitwise on", len(differ), "of", len(cases.FAST_OPS), "cases:", differ)
    for fam in ("conv3x3", "conv1x1", "dwconv3x3", "silu", "layer_norm", "attention", "sep_attention", "linear"):
        assert any(n.startswith(fam) for n in differ), f"no {fam} case differs between neon and ref"


_models = {}


def _model(name, weights):
    key = (name, weights)
    if key not in _models:
        if weights == "timm":
            d = np.load(os.path.join(REFS, f"{name}.npz"))
            sd = {k[2:]: d[k] for k in d.files if k.startswith("w/")}
            m = mobilevit.create_model(name)
            res = m.load_state_dict(sd)
            assert not res.missing_keys and not res.unexpected_keys
        else:
            m = mobilevit.create_model(name, seed=0)
        _models[key] = m
    return _models[key]


@pytest.mark.parametrize("size", cases.SIZES, ids=[f"{h}x{w}" for h, w in cases.SIZES])
@pytest.mark.parametrize("name", cases.MODELS)
@pytest.mark.parametrize("isa", ISAS)
def test_network(name, size, isa):
    tag = f"{size[0]}x{size[1]}"
    d = np.load(os.path.join(REFS, f"{name}.npz"))
    x = cases.model_input(size)
    mobilevit.set_isa(isa)
    try:
        y = _model(name, "timm")(x, num_threads=1)
        close(f"{name} {tag} {isa} timm weights vs timm", y, d[f"torch/{tag}"])
        close(f"{name} {tag} {isa} timm weights vs x86 ref", y, d[f"x86ref/{tag}"])
        y0 = _model(name, "seed0")(x)
        close(f"{name} {tag} {isa} seed=0 vs x86 ref", y0, d[f"x86ref_seed0/{tag}"])
        if isa == "ref":   # the same bits as on x86 (no FP contraction on either)
            np.testing.assert_array_equal(y, d[f"x86ref/{tag}"], err_msg="aarch64 ref != x86 ref")
            np.testing.assert_array_equal(y0, d[f"x86ref_seed0/{tag}"], err_msg="aarch64 ref != x86 ref")
        # 1 and 2 threads are bit-identical (the OpenMP path runs under qemu too)
        np.testing.assert_array_equal(y, _model(name, "timm")(x, num_threads=2))
    finally:
        mobilevit.set_isa("auto")
