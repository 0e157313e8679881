"""The compiled finiteness check (bptt._checks) against its NumPy twin."""

import numpy as np
import pytest

from bptt import _validation, _vmath

pytest.importorskip("bptt._checks")
CHECKS = ["bptt._checks"] + [f"bptt._checks_{v}" for v in _vmath.cpu_variants()[1:]]


@pytest.fixture(params=CHECKS)
def checks(request):
    """Every build of the compiled checks this CPU runs."""
    return pytest.importorskip(request.param)

SPECIAL = [np.nan, np.inf, -np.inf, -np.nan]
EDGE = [0.0, -0.0, 1.0, "max", "tiny", "subnormal"]


def _edge(value, dtype):
    info = np.finfo(dtype)
    return {"max": info.max, "tiny": info.tiny, "subnormal": info.smallest_subnormal}.get(
        value, value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 16, 33, 1000])
def test_every_position_of_every_non_finite_value(checks, dtype, size):
    rng = np.random.default_rng(size)
    base = rng.standard_normal(size).astype(dtype)
    assert checks.all_finite(base)
    for value in SPECIAL:
        for pos in {0, size // 2, size - 1}:
            x = base.copy()
            x[pos] = value
            assert not checks.all_finite(x), (value, pos)
            assert checks.all_finite(x) == bool(np.isfinite(x).all())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_extremes_pass(checks, dtype):
    x = np.array([_edge(v, dtype) for v in EDGE] * 5, dtype=dtype)
    x = np.concatenate([x, -x])
    assert checks.all_finite(x)


def test_empty(checks):
    assert checks.all_finite(np.empty(0))
    assert checks.all_finite(np.empty(0, np.float32))


@pytest.mark.parametrize("make", [
    lambda x: x,                                  # contiguous: compiled
    lambda x: x[:, ::2],                          # strided: NumPy
    lambda x: np.asfortranarray(x),               # Fortran order: NumPy
    lambda x: x.astype(np.float16),               # no compiled kernel: NumPy
    lambda x: x.astype(x.dtype.newbyteorder()),   # byte-swapped: NumPy
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_validation_paths_agree(make, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10)).astype(dtype)
    assert _validation.all_finite(make(x))
    for value in SPECIAL:
        y = x.copy()
        y[3, 4] = value
        assert not _validation.all_finite(make(y))


def test_overflowing_sum_of_finite_values_is_finite():
    # the NumPy twin's fast path sums: a sum that overflows must fall back
    x = np.full(1000, np.finfo(np.float32).max, dtype=np.float32)
    assert _validation.all_finite(x)
    assert _validation.all_finite(x[::2])
