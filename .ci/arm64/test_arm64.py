"""Emulated side of the arm64 check: the aarch64 build of mobilevit._C under
qemu-aarch64, numpy only, compared to what make_refs.py recorded on the x86
host (PyTorch's outputs and our x86 "ref" ISA's).  MV_ARM64_REFS names the
folder of the .npz files.  Correctness only: nothing here is timed."""
import os
import platform

import numpy as np
import pytest

import cases
import mobilevit

REFS = os.environ["MV_ARM64_REFS"]
OPS = np.load(os.path.join(REFS, "ops.npz"))


def close(what, ours, ref):
    err, scale = cases.max_err(ours, ref)
    print(f"{what}: max abs diff {err:.2e} (limit {cases.TOL * scale:.2e})")
    assert err <= cases.TOL * scale, f"{what}: max abs diff {err:.3e} > {cases.TOL:g} x {scale:.3g}"


def test_platform_and_isas():
    assert platform.machine() == "aarch64"
    isas = mobilevit.available_isas()
    print("available_isas:", isas, "get_isa:", mobilevit.get_isa())
    assert isas == ["ref"] and mobilevit.get_isa() == "ref"


@pytest.mark.parametrize("name", list(cases.op_inputs()))
@pytest.mark.parametrize("against", ["torch", "x86ref"])
def test_op(name, against):
    a = cases.op_inputs()[name]
    close(f"op {name} vs {against}", cases.run_ours(mobilevit, name, a), OPS[f"{against}/{name}"])


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
def test_network(name, size):
    tag = f"{size[0]}x{size[1]}"
    d = np.load(os.path.join(REFS, f"{name}.npz"))
    x = cases.model_input(size)
    y = _model(name, "timm")(x)
    close(f"{name} {tag} timm weights vs timm", y, d[f"torch/{tag}"])
    close(f"{name} {tag} timm weights vs x86 ref", y, d[f"x86ref/{tag}"])
    close(f"{name} {tag} seed=0 vs x86 ref", _model(name, "seed0")(x), d[f"x86ref_seed0/{tag}"])
    # 1 and 2 threads are bit-identical (the OpenMP path runs under qemu too)
    np.testing.assert_array_equal(_model(name, "timm")(x, num_threads=1), _model(name, "timm")(x, num_threads=2))
