"""The output layer and losses: src/_output.pyx against its plain NumPy
reference (python/bptt/reference/output.py), in every layout of its rows."""

import numpy as np
import pytest

from bptt.rnn import load_kernels

# (loss, activation) codes of the output kernels the contract allows
CODES = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 1)]


def problem(seed, rows, H=5, O=3, loss=0):
    """Hs (rows, H), W_oh, b_o and a target of the loss's kind."""
    rng = np.random.default_rng(seed)
    Hs = rng.standard_normal((rows, H))
    W_oh, b_o = rng.standard_normal((O, H)), rng.standard_normal(O)
    if loss == 1:  # cross-entropy: integer labels
        target = rng.integers(0, O, rows).astype(np.int64)
    else:
        target = rng.uniform(0, 1, (rows, O))
    return Hs, W_oh, b_o, target


def run_output_layer(Hs, W_oh, b_o, activation, loss, target, denominator, N,
                     accumulate=False, layout=None):
    """[loss, Z, Y, dZ, dW_oh, db_o, dHs] of output_layer over N rows: the
    plain reference when ``layout`` is None, else the compiled kernel with
    its (n_threads, parts, part_stride)."""
    kernels = load_kernels("numpy" if layout is None else "cython", "output")
    O, H = W_oh.shape
    Z, Y, dZ = (np.empty((N, O)) for _ in range(3))
    # accumulate adds into these: start them non-zero
    dW_oh, db_o, dHs = np.full((O, H), 0.5), np.full(O, 0.5), np.empty((N, H))
    value = kernels.output_layer(Hs, W_oh, b_o, activation, loss, target, denominator,
                                 Z, Y, dZ, dW_oh, db_o, dHs, accumulate, *(layout or ()))
    return [value, Z, Y, dZ, dW_oh, db_o, dHs]


def assert_same(got, expected):
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    for a, b in zip(got[1:], expected[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss,activation", CODES)
@pytest.mark.parametrize("N", [1, 3, 50])
@pytest.mark.parametrize("accumulate", [False, True])
def test_output_layer_with_threads_matches_reference(loss, activation, N, accumulate):
    """The compiled output layer (forward, loss, backward in row parts) equals
    the NumPy reference for every loss and activation, on 1 to 4 threads,
    with fewer rows than threads too."""
    Hs, W_oh, b_o, target = problem(N, N, loss=loss)
    args = (Hs, W_oh, b_o, activation, loss, target, 7.0 * N, N, accumulate)
    expected = run_output_layer(*args)
    for threads in (1, 2, 3, 4):
        assert_same(run_output_layer(*args, layout=(threads,)), expected)


@pytest.mark.parametrize("loss,activation", [(0, 0), (1, 2), (2, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_output_layer_part_stride(loss, activation, threads):
    """part_stride: part p reads its rows of Hs and the target from row
    p * part_stride (a chunk of every slab of a longer cache) and writes its
    outputs contiguously; the compiled layer equals the reference run on the
    gathered rows."""
    parts, rows, stride = 2, 6, 10
    Hs, W_oh, b_o, target = problem(5, parts * stride, loss=loss)
    picked = np.concatenate([np.arange(k * stride + 2, k * stride + 2 + rows)
                             for k in range(parts)])
    N = parts * rows
    expected = run_output_layer(Hs[picked], W_oh, b_o, activation, loss, target[picked],
                                40.0, N)
    got = run_output_layer(Hs[2:], W_oh, b_o, activation, loss, target[2:], 40.0, N,
                           layout=(threads, parts, stride))
    assert_same(got, expected)
    with pytest.raises(ValueError, match="part_stride=10 needs parts >= 1 dividing"):
        run_output_layer(Hs[12:], W_oh, b_o, activation, loss, target[12:], 40.0, N,
                         layout=(threads, parts, stride))
