"""The kernels' vectorized exp/tanh/sigmoid against NumPy over the float range."""

import numpy as np
import pytest
from scipy.special import expit

from bptt import _vmath


@pytest.mark.parametrize("dtype,span,max_ulp", [(np.float64, 40, 4), (np.float32, 20, 4)])
@pytest.mark.parametrize("name,ref", [("exp", np.exp), ("tanh", np.tanh), ("sigmoid", expit)])
def test_accuracy(name, ref, dtype, span, max_ulp):
    tiny = np.geomspace(1e-30, 1, 2000)
    x = np.concatenate([np.linspace(-span, span, 100001), tiny, -tiny, [0.0]]).astype(dtype)
    out = np.empty_like(x)
    _vmath.apply(name, x, out)
    with np.errstate(over="ignore"):
        expected = ref(x.astype(np.float64))
    info = np.finfo(dtype)
    normal = (np.abs(expected) > info.tiny) & (np.abs(expected) < info.max)
    rel = np.abs(out[normal] - expected[normal]) / np.abs(expected[normal])
    assert rel.max() <= max_ulp * info.eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturation_and_special_values(dtype):
    x = np.array([-1e30, -1000, 1000, 1e30, np.inf, -np.inf, 0.0, -0.0], dtype=dtype)
    out = np.empty_like(x)
    _vmath.apply("tanh", x, out)
    np.testing.assert_array_equal(out[:6], [-1, -1, 1, 1, 1, -1])
    assert out[6] == 0 and np.signbit(out[7])
    _vmath.apply("sigmoid", x, out)
    assert ((out[:6] >= 0) & (out[:6] <= 1)).all() and out[6] == 0.5
    nan = np.array([np.nan], dtype=dtype)
    for name in ("exp", "tanh", "sigmoid"):
        _vmath.apply(name, nan, out[:1])
        assert np.isnan(out[0]), name


def test_unknown_function_name():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="name must be"):
        _vmath.apply("log", x, x.copy())
