"""The kernels' inline building blocks: the vectorized exp/tanh/sigmoid against
NumPy over the float range, the packed recurrent product against a matmul."""

import numpy as np
import pytest
from scipy.special import expit

import importlib

from helpers import BUILDS, CELLS

# every build of the kernels this CPU runs: the baseline and, on x86-64, the
# AVX2 + FMA and AVX-512 twins
VARIANTS = ["_vmath" if build == "baseline" else f"_vmath_{build}" for build in BUILDS]


@pytest.fixture(params=VARIANTS)
def vmath(request):
    return importlib.import_module(f"bptt.{request.param}")


@pytest.mark.parametrize("dtype,span,max_ulp", [(np.float64, 40, 4), (np.float32, 20, 4)])
@pytest.mark.parametrize("name,ref", [("exp", np.exp), ("tanh", np.tanh), ("sigmoid", expit)])
def test_accuracy(vmath, name, ref, dtype, span, max_ulp):
    tiny = np.geomspace(1e-30, 1, 2000)
    x = np.concatenate([np.linspace(-span, span, 100001), tiny, -tiny, [0.0]]).astype(dtype)
    out = np.empty_like(x)
    vmath.apply(name, x, out)
    with np.errstate(over="ignore"):
        expected = ref(x.astype(np.float64))
    info = np.finfo(dtype)
    normal = (np.abs(expected) > info.tiny) & (np.abs(expected) < info.max)
    rel = np.abs(out[normal] - expected[normal]) / np.abs(expected[normal])
    assert rel.max() <= max_ulp * info.eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturation_and_special_values(vmath, dtype):
    x = np.array([-1e30, -1000, 1000, 1e30, np.inf, -np.inf, 0.0, -0.0], dtype=dtype)
    out = np.empty_like(x)
    vmath.apply("tanh", x, out)
    np.testing.assert_array_equal(out[:6], [-1, -1, 1, 1, 1, -1])
    assert out[6] == 0 and np.signbit(out[7])
    vmath.apply("sigmoid", x, out)
    assert ((out[:6] >= 0) & (out[:6] <= 1)).all() and out[6] == 0.5
    nan = np.array([np.nan], dtype=dtype)
    for name in ("exp", "tanh", "sigmoid"):
        vmath.apply(name, nan, out[:1])
        assert np.isnan(out[0]), name


def test_unknown_function_name(vmath):
    x = np.zeros(3)
    with pytest.raises(ValueError, match="name must be"):
        vmath.apply("log", x, x.copy())


@pytest.mark.parametrize("cell", CELLS)
def test_kernel_builds_agree(cell):
    """Every build computes the same training step (the AVX2 and AVX-512
    builds through their packed recurrent products and weight gradients, the
    baseline through BLAS), with k-blocking in the backward product
    (gates x H > 256) and in the weight gradients (T x n = 280 > 256)."""
    import numpy as np
    import bptt
    if len(VARIANTS) < 2:
        pytest.skip("no SIMD build runs on this machine")
    module = "_" + bptt._cells.CELLS[cell].kernel  # the entry's kernel module
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 40, 3))
    y = rng.standard_normal((7, 40, 2))
    results = []
    for variant in VARIANTS:
        name = f"bptt.{module}{variant[len('_vmath'):]}"
        net = bptt.RNN(3, 90, 2, cell=cell, output_activation="sigmoid", random_state=0)
        net._cell.kernels = importlib.import_module(name)
        results.append((name, net.loss_and_grad(X, y, truncate=7)))
    (_, (loss_a, grads_a)), others = results[0], results[1:]
    for name, (loss_b, grads_b) in others:
        assert loss_a == pytest.approx(loss_b, rel=1e-13), name
        for key in grads_a:
            np.testing.assert_allclose(grads_a[key], grads_b[key], rtol=1e-11,
                                       atol=1e-14, err_msg=f"{name} {key}")


# rows around the micro-kernel's 6 and 8, columns around its 8/16/32-wide panels,
# depths across its k block (256)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 16, 16), (5, 7, 3), (6, 16, 64),
                                   (7, 17, 255), (13, 33, 257), (32, 64, 64),
                                   (11, 40, 600), (2, 300, 9), (8, 32, 33),
                                   (15, 31, 70), (17, 65, 513), (96 + 9, 48, 20)])
@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_product(vmath, m, n, k, transpose, dtype):
    rng = np.random.default_rng(m * 1000 + n + k)
    A = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((n, k) if transpose else (k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    expected = A.astype(np.float64) @ (W.T if transpose else W).astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    atol = rtol * np.sqrt(k)
    for beta in (0.0, 1.0, 0.5):
        C = C0.copy() if beta else np.full((m, n), np.nan, dtype=dtype)
        vmath.packed_product(A, W, transpose, beta, C)
        np.testing.assert_allclose(C, expected + beta * C0, rtol=rtol, atol=atol,
                                   err_msg=f"beta={beta}")


def test_packed_product_propagates_nan(vmath):
    A = np.ones((7, 5))
    W = np.ones((20, 5))
    W[3, 2] = np.nan
    C = np.zeros((7, 20))
    vmath.packed_product(A, W, True, 1.0, C)
    assert np.isnan(C[:, 3]).all() and np.isfinite(np.delete(C, 3, axis=1)).all()
