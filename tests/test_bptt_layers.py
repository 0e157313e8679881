"""The general driver's row reversal (bptt._bptt._rows_reversed): the rows
of a run in the other direction's order, for uniform and ragged layouts,
into column blocks of wider arrays and added in place."""
import numpy as np
import pytest

from bptt._bptt import Layout, _rows_reversed


@pytest.mark.parametrize("lengths", [[5, 5, 5], [1], [7, 3, 3, 1], [4, 6, 2, 6, 1]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_reversed_is_the_gather_through_rev(lengths, dtype):
    lay = Layout(np.array(lengths))
    rng = np.random.default_rng(0)
    F = 3
    src = rng.standard_normal((lay.rows, 2 * F)).astype(dtype)
    expected = src[lay.rev]
    scratch_calls = []

    def scratch():
        scratch_calls.append(1)
        return np.full((lay.rows, F), np.nan, dtype=dtype)

    # contiguous into contiguous
    out = np.full_like(src, np.nan)
    assert _rows_reversed(lay, src, out) is out
    np.testing.assert_array_equal(out, expected)
    # a column block of a wider array, read and written; the other block untouched
    wide = np.full((lay.rows, 2 * F), 7.0, dtype=dtype)
    _rows_reversed(lay, src[:, F:], wide[:, :F], scratch)
    np.testing.assert_array_equal(wide[:, :F], expected[:, F:])
    np.testing.assert_array_equal(wide[:, F:], 7.0)
    # added in place
    acc = np.ones((lay.rows, F), dtype=dtype)
    _rows_reversed(lay, src[:, :F], acc, scratch, add=True)
    np.testing.assert_allclose(acc, 1.0 + expected[:, :F], rtol=1e-6)
    # an involution: twice is the identity
    back = np.empty_like(src)
    _rows_reversed(lay, out, back)
    np.testing.assert_array_equal(back, src)
    # the uniform layout needs no scratch buffer
    assert (len(scratch_calls) == 0) == lay.uniform
