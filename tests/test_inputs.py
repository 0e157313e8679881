"""The compiled input preparation (bptt._inputs) against its NumPy twins."""

import warnings

import numpy as np
import pytest

from bptt import _validation, _vmath

pytest.importorskip("bptt._inputs")
BUILDS = ["bptt._inputs"] + [f"bptt._inputs_{v}" for v in _vmath.cpu_variants()[1:]]


@pytest.fixture(params=BUILDS)
def inputs(request):
    """Every build of the compiled input module this CPU runs."""
    return pytest.importorskip(request.param)

SPECIAL = [np.nan, np.inf, -np.inf, -np.nan]
EDGE = [0.0, -0.0, 1.0, "max", "tiny", "subnormal"]


def _edge(value, dtype):
    info = np.finfo(dtype)
    return {"max": info.max, "tiny": info.tiny, "subnormal": info.smallest_subnormal}.get(
        value, value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 16, 33, 1000])
def test_every_position_of_every_non_finite_value(inputs, dtype, size):
    rng = np.random.default_rng(size)
    base = rng.standard_normal(size).astype(dtype)
    assert inputs.all_finite(base)
    for value in SPECIAL:
        for pos in {0, size // 2, size - 1}:
            x = base.copy()
            x[pos] = value
            assert not inputs.all_finite(x), (value, pos)
            assert inputs.all_finite(x) == bool(np.isfinite(x).all())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_extremes_pass(inputs, dtype):
    x = np.array([_edge(v, dtype) for v in EDGE] * 5, dtype=dtype)
    x = np.concatenate([x, -x])
    assert inputs.all_finite(x)


def test_empty(inputs):
    assert inputs.all_finite(np.empty(0))
    assert inputs.all_finite(np.empty(0, np.float32))


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
    # the NumPy twin's fast path sums: a sum that overflows must fall back,
    # and say nothing of the overflow
    x = np.full(1000, np.finfo(np.float32).max, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _validation.all_finite(x)
        assert _validation.all_finite(x[::2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,start,stop", [((1, 1, 1), 0, 1), ((3, 7, 5), 0, 7),
                                              ((4, 9, 2), 3, 8), ((2, 5, 3), 2, 2),
                                              ((32, 50, 32), 10, 50)])
def test_time_major_copy(inputs, dtype, shape, start, stop):
    rng = np.random.default_rng(sum(shape))
    X = rng.standard_normal(shape).astype(dtype)
    out = np.full((shape[1] + 2, shape[0], shape[2]), np.nan, dtype=dtype)
    inputs.time_major(X, start, stop, out)
    np.testing.assert_array_equal(out[: stop - start], X[:, start:stop].transpose(1, 0, 2))
    assert np.isnan(out[stop - start:]).all()  # nothing past the chunk is written


def test_time_major_copy_checks_shapes(inputs):
    X = np.zeros((3, 4, 2))
    with pytest.raises(ValueError, match="out must have shape"):
        inputs.time_major(X, 0, 4, np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="start <= stop"):
        inputs.time_major(X, 2, 5, np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="slabs must divide n_samples=3; got slabs=2"):
        inputs.time_major(X, 0, 4, np.zeros((8, 1, 2)), 2)
    with pytest.raises(ValueError, match=r"out must have shape \(8, 2, 2\)"):
        inputs.time_major(np.zeros((4, 4, 2)), 0, 4, np.zeros((4, 2, 2)), 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slabs", [2, 3])
@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("start,stop", [(0, 7), (2, 5)])
def test_time_major_copy_into_slabs(inputs, dtype, slabs, threads, start, stop):
    """The slab layout of the kernels (src/_cellparts.pxd): slab k, its
    timesteps one after another, holds samples k*rows..; copied by one
    thread or one slab per thread, and the NumPy twin agrees."""
    rows = 4
    X = np.random.default_rng(slabs).standard_normal((slabs * rows, 7, 3)).astype(dtype)
    steps = stop - start
    out = np.full((slabs * steps + 1, rows, 3), np.nan, dtype=dtype)
    inputs.time_major(X, start, stop, out, slabs, threads)
    for k in range(slabs):
        np.testing.assert_array_equal(out[k * steps:(k + 1) * steps],
                                      X[k * rows:(k + 1) * rows, start:stop].transpose(1, 0, 2))
    assert np.isnan(out[slabs * steps:]).all()
    wide = np.zeros((slabs * rows, 7, 6), dtype=dtype)
    wide[:, :, ::2] = X
    strided = wide[:, :, ::2]  # not C-contiguous: the NumPy twin copies it
    assert not strided.flags.c_contiguous
    chunk = _validation.time_major(strided, start, stop, np.empty_like(out), slabs)
    np.testing.assert_array_equal(chunk, out[: slabs * steps])


@pytest.mark.parametrize("make", [
    lambda x: x,                                   # compiled
    lambda x: x[:, :, ::2],                        # strided: NumPy
    lambda x: np.asfortranarray(x),                # Fortran order: NumPy
    lambda x: x.astype(np.float64),                # another dtype than out: NumPy
])
def test_validation_time_major_paths_agree(make):
    rng = np.random.default_rng(1)
    X = make(rng.standard_normal((5, 6, 4)).astype(np.float32))
    out = np.empty((6, 5, X.shape[2]), dtype=np.float32)
    chunk = _validation.time_major(X, 1, 5, out)
    assert chunk.shape == (4, 5, X.shape[2])
    np.testing.assert_array_equal(chunk, X[:, 1:5].transpose(1, 0, 2).astype(np.float32))


def _rows_by_group_expected(src, out, groups, T, reverse, add):
    """rows_by_group by its definition, one row at a time."""
    expected = out.copy()
    for r0, n in groups:
        for t in range(T):
            s = T - 1 - t if reverse else t
            for b in range(n):
                row = src[r0 + s * n + b]
                expected[r0 + t * n + b] = expected[r0 + t * n + b] + row if add else row
    return expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse,add", [(True, False), (True, True), (False, False),
                                         (False, True)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_rows_by_group(inputs, dtype, reverse, add, threads):
    """Each group's rows, its timesteps reversed or not, copied or added,
    between column blocks of wider arrays (rows outside the groups
    untouched), by one thread or one group per thread; the NumPy twin
    (bptt._validation.rows_by_group on a dtype it does not compile) agrees."""
    rng = np.random.default_rng(7)
    T, F = 4, 3
    groups = np.array([[0, 3], [12, 2], [20, 1]], dtype=np.int64)  # row 24 in none
    rows = 25
    wide_src = rng.standard_normal((rows, F + 2)).astype(dtype)
    wide_out = rng.standard_normal((rows, 2 * F)).astype(dtype)
    src, out = wide_src[:, 1:F + 1], wide_out[:, F:]
    expected = _rows_by_group_expected(src, out, groups.tolist(), T, reverse, add)
    before = wide_out.copy()
    inputs.rows_by_group(src, out, groups, T, reverse, add, threads)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(wide_out[:, :F], before[:, :F])
    twin = before[:, F:].astype(np.float16)
    _validation.rows_by_group(src.astype(np.float16), twin, groups, T, reverse, add)
    np.testing.assert_allclose(twin, expected.astype(np.float16), rtol=1e-2)


def test_rows_by_group_checks_its_arguments(inputs):
    src, out = np.zeros((6, 2)), np.zeros((6, 2))
    groups = np.array([[0, 2]], dtype=np.int64)
    with pytest.raises(ValueError, match="out must have shape"):
        inputs.rows_by_group(src, np.zeros((5, 2)), groups, 3)
    with pytest.raises(ValueError, match=r"group 0 \(first row 2, 2 sequences of 3 steps\)"):
        inputs.rows_by_group(src, out, np.array([[2, 2]], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="outside"):
        inputs.rows_by_group(src, out, np.array([[-1, 1]], dtype=np.int64), 1)
    with pytest.raises(ValueError, match="rows of F contiguous"):
        inputs.rows_by_group(np.zeros((6, 4))[:, ::2], out, groups, 3)
    with pytest.raises(ValueError, match="T must be >= 0"):
        inputs.rows_by_group(src, out, groups, -1)
    with pytest.raises(ValueError, match=r"groups must have shape \(groups, 2 or more\)"):
        inputs.rows_by_group(src, out, np.zeros((1, 1), dtype=np.int64), 3)
