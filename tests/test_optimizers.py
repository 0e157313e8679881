"""The optimizers' compiled steps (bptt._optim) against their NumPy twins
(get_updates), and the refusal of a step that would make weights non-finite."""

import numpy as np
import pytest

from bptt import optimizers
from bptt.optimizers import OPTIMIZERS

pytest.importorskip("bptt._optim")

SHAPES = [(7, 3), (7, 7), (7,), (2, 7), (2,)]
SETTINGS = {
    "sgd": dict(learning_rate=0.05),
    "momentum": dict(learning_rate=0.05, momentum=0.8),
    "adam": dict(learning_rate=0.01, beta_1=0.85, beta_2=0.99, epsilon=1e-7),
}


def _arrays(rng, dtype):
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def _run(name, dtype, compiled, monkeypatch, steps=4, scales=(1.0, 0.5, 1.0, 0.25)):
    """Params and optimizer state after ``steps`` steps, through the compiled
    kernels or, with them hidden, through get_updates."""
    with monkeypatch.context() as patch:
        if not compiled:
            patch.setattr(optimizers, "_compiled_steps", lambda: None)
        rng = np.random.default_rng(0)
        params = _arrays(rng, dtype)
        opt = OPTIMIZERS[name](params, **SETTINGS[name])
        for step in range(steps):
            grads = _arrays(rng, dtype)
            assert opt.step(params, grads, scales[step])
        return params, opt._state_arrays()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_compiled_step_matches_numpy(name, dtype, rtol, monkeypatch):
    params_c, state_c = _run(name, dtype, True, monkeypatch)
    params_n, state_n = _run(name, dtype, False, monkeypatch)
    for a, b in zip([*params_c, *state_c], [*params_n, *state_n]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_follows_its_formula(name):
    """One step from zero state, written out: sgd and momentum step by
    -lr * g; Adam's first step is -lr * g / (|g| + eps') for every element."""
    rng = np.random.default_rng(1)
    params = _arrays(rng, np.float64)
    grads = _arrays(rng, np.float64)
    before = [p.copy() for p in params]
    opt = OPTIMIZERS[name](params, **SETTINGS[name])
    assert opt.step(params, grads, 0.5)
    lr = SETTINGS[name]["learning_rate"]
    for p, p0, g in zip(params, before, grads):
        g = 0.5 * g
        if name == "adam":
            # m = (1 - b1) g, v = (1 - b2) g^2, lr_t = lr sqrt(1 - b2) / (1 - b1)
            eps = SETTINGS["adam"]["epsilon"]
            b2 = SETTINGS["adam"]["beta_2"]
            expected = p0 - lr * g / (np.abs(g) + eps / np.sqrt(1 - b2))
        else:
            expected = p0 - lr * g
        np.testing.assert_allclose(p, expected, rtol=1e-12)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_step_is_refused(name, bad, compiled, monkeypatch):
    if not compiled:
        monkeypatch.setattr(optimizers, "_compiled_steps", lambda: None)
    rng = np.random.default_rng(2)
    params = _arrays(rng, np.float32)
    grads = _arrays(rng, np.float32)
    grads[3][1, 4] = bad  # in a later array: earlier ones must not be written either
    before = [p.copy() for p in params]
    opt = OPTIMIZERS[name](params, **SETTINGS[name])
    assert not opt.step(params, grads)
    for p, p0 in zip(params, before):
        np.testing.assert_array_equal(p, p0)


def test_arrays_the_kernels_do_not_take_use_numpy(monkeypatch):
    """Strided gradients, or a dtype mix, go through get_updates."""
    calls = []
    real = OPTIMIZERS["sgd"].get_updates
    monkeypatch.setattr(OPTIMIZERS["sgd"], "get_updates",
                        lambda self, grads: calls.append(1) or real(self, grads))
    params = [np.zeros((4, 4)), np.zeros(4)]
    opt = OPTIMIZERS["sgd"](params, learning_rate=1.0)
    grads = [np.ones((4, 8))[:, ::2], np.ones(4)]
    assert opt.step(params, grads, 2.0)
    assert calls == [1]
    np.testing.assert_array_equal(params[0], -2.0)
    assert opt.step(params, [np.ones((4, 4), np.float32), np.ones(4)])
    assert calls == [1, 1]


def test_compiled_steps_check_sizes():
    from bptt.rnn import load_kernels
    steps = load_kernels("cython", "optim")
    with pytest.raises(ValueError, match=r"grad must have shape \(4,\); got shape \(3,\)"):
        steps.sgd_step(np.zeros(4), np.zeros(3), np.zeros(4), 0.1, 1.0)
