import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import mobilevit  # noqa: E402

ISAS = mobilevit.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Every kernel path this CPU can run ("ref" always)."""
    return request.param


@pytest.fixture(autouse=True)
def _restore_globals():
    isa, nth = mobilevit.get_isa(), mobilevit.get_num_threads()
    yield
    mobilevit.set_isa(isa)
    mobilevit.set_num_threads(nth)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
