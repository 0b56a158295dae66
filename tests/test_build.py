"""Build variants (issue 14.3): what build_info() / `mobilevit info` report, and
how thread settings behave in an OpenMP and in a single-threaded build.

Each build variant of .ci/run runs this file against its own build; the job
says what it built through MOBILEVIT_EXPECT_OPENMP (0/1) and
MOBILEVIT_EXPECT_COMPILER (e.g. "clang"), so a job that picked up the wrong
extension (another tree's, or a silent OpenMP fallback) fails here."""
import os
import warnings

import numpy as np
import pytest

import mobilevit
from mobilevit import _C
from mobilevit.cli import main

INFO = mobilevit.build_info()


def test_build_info_fields():
    assert set(INFO) == {"version", "compiler", "openmp", "openmp_version", "threading", "max_threads",
                         "isa", "available_isas"}
    assert INFO["version"] == mobilevit.__version__
    assert INFO["openmp"] is _C.has_openmp()
    assert INFO["compiler"].split()[0] in ("gcc", "clang", "Apple", "MSVC"), INFO["compiler"]
    assert INFO["isa"] == mobilevit.get_isa() and INFO["available_isas"] == mobilevit.available_isas()
    if INFO["openmp"]:
        assert INFO["threading"] == "OpenMP" and INFO["max_threads"] == _C.MAX_THREADS
        assert float(INFO["openmp_version"]) >= 2.0
    else:
        assert INFO["threading"] == "single-threaded" and INFO["max_threads"] == 1
        assert INFO["openmp_version"] is None


def test_build_is_the_one_the_job_built():
    want_omp = os.environ.get("MOBILEVIT_EXPECT_OPENMP")
    want_cc = os.environ.get("MOBILEVIT_EXPECT_COMPILER")
    if want_omp is None and want_cc is None:
        pytest.skip("no MOBILEVIT_EXPECT_OPENMP / MOBILEVIT_EXPECT_COMPILER (set by the build-variant jobs)")
    if want_omp is not None:
        assert INFO["openmp"] == (want_omp == "1"), INFO
    if want_cc is not None:
        assert INFO["compiler"].split()[0] == want_cc, INFO


def test_info_says_how_it_threads(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("threads: ")][0]
    if INFO["openmp"]:
        assert f"(OpenMP: yes, version {INFO['openmp_version']})" in line
    else:
        assert line == "threads: 1 (OpenMP: no (single-threaded))"
    assert f"compiler: {INFO['compiler']}" in out.splitlines()


def test_set_num_threads_above_one():
    if INFO["openmp"]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mobilevit.set_num_threads(2)
        assert mobilevit.get_num_threads() == 2
    else:
        with pytest.warns(RuntimeWarning, match="single-threaded"):
            mobilevit.set_num_threads(2)
        assert mobilevit.get_num_threads() == 1      # what a call really uses
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # 1 never warns
        mobilevit.set_num_threads(1)
    assert mobilevit.get_num_threads() == 1
    for bad in (0, -1, _C.MAX_THREADS + 1, 2.0, True):   # the same rule in every build
        with pytest.raises(ValueError):
            mobilevit.set_num_threads(bad)


def test_calls_with_more_threads_give_the_same_bits():
    """num_threads=2 per call and set_num_threads(2) run (on one thread without
    OpenMP) and give exactly the single-thread result."""
    m = mobilevit.create_model("mobilevit_xxs")
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    mobilevit.set_num_threads(1)
    one = m(x)
    two = m(x, num_threads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mobilevit.set_num_threads(2)
    default = m(x)
    assert np.array_equal(one, two) and np.array_equal(one, default)
    y = mobilevit.ops.silu(x, num_threads=2)
    assert np.array_equal(y, mobilevit.ops.silu(x, num_threads=1))
