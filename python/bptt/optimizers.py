"""Gradient-based optimizers used by the estimators.

Small objects in the manner of scikit-learn's
``sklearn/neural_network/_stochastic_optimizers.py``: each one is built for a
list of parameter arrays, keeps its own state (velocities, moment estimates)
in arrays of the same shapes, and turns a list of gradients into a list of
updates. :meth:`BaseOptimizer.update_params` adds the updates to the
parameters in place. The estimators call :meth:`BaseOptimizer.step`, which
applies a step only when every new weight is finite, so that a diverging
step never overwrites the last finite weights; it runs each array's step in
one compiled pass (``bptt._optim``) and falls back to :meth:`get_updates`,
the NumPy twin, for arrays the compiled steps do not take.
"""

import numpy as np

from ._kernels import compiled_helpers
from ._validation import COMPILED_DTYPES


def _compiled_steps():
    """bptt._optim of the build this CPU runs, or None when not built."""
    return compiled_helpers("optim")


def _compiled_ok(arrays):
    """Whether the compiled steps take these arrays: C-contiguous, one float
    dtype for all."""
    dtype = arrays[0].dtype
    return (dtype in COMPILED_DTYPES
            and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays))


class BaseOptimizer:
    """Plain gradient descent: ``param -= learning_rate * grad``.

    Parameters
    ----------
    params : list of ndarray
        The arrays that will be updated (used for their shapes and dtypes).
    learning_rate : float, default=0.01
        The step size.
    """

    def __init__(self, params, learning_rate=0.01):
        self.learning_rate = float(learning_rate)

    def get_updates(self, grads):
        """Return the updates for one step (to be added to the parameters).

        Parameters
        ----------
        grads : list of ndarray
            Gradients of the loss, aligned with ``params``.

        Returns
        -------
        updates : list of ndarray
        """
        return [-self.learning_rate * grad for grad in grads]

    def update_params(self, params, grads):
        """Update ``params`` in place with one step computed from ``grads``.

        Parameters
        ----------
        params : list of ndarray
            Modified in place.
        grads : list of ndarray
            Gradients of the loss, aligned with ``params``.
        """
        for param, update in zip(params, self.get_updates(grads)):
            param += update

    def step(self, params, grads, scale=1.0):
        """One step in place, unless it would make a parameter non-finite.

        Parameters
        ----------
        params : list of ndarray
            Modified in place when the step is taken.
        grads : list of ndarray
            Gradients of the loss, aligned with ``params`` (same shapes).
        scale : float, default=1.0
            Factor applied to every gradient first (gradient clipping).

        Returns
        -------
        taken : bool
            False when some new weight would be NaN or infinite: ``params``
            are left as they were, while the optimizer's own state has
            moved, so it should not be used again.
        """
        steps = _compiled_steps()
        if steps is not None and _compiled_ok([*params, *grads, *self._state_arrays()]):
            self._start_step()
            new = [np.empty_like(param) for param in params]
            finite = True
            for i, (param, grad, out) in enumerate(zip(params, grads, new)):
                finite &= self._compiled_step(steps, i, param.reshape(-1),
                                              grad.reshape(-1), out.reshape(-1), scale)
        else:
            # a diverging step is reported by the return value, not by warnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if scale != 1.0:
                    grads = [grad * scale for grad in grads]
                new = [param + update
                       for param, update in zip(params, self.get_updates(grads))]
            finite = all(np.isfinite(v).all() for v in new)
        if not finite:
            return False
        copied = 0
        try:
            for param, value in zip(params, new):
                np.copyto(param, value)
                copied += 1
        except BaseException:
            # A KeyboardInterrupt between two copies: finish the copy (each
            # is idempotent), so the weights are one whole step, never part.
            for param, value in zip(params[copied:], new[copied:]):
                np.copyto(param, value)
            raise
        return True

    # the compiled form of get_updates, one array at a time
    def _start_step(self):
        """What a step does once, before its arrays (Adam counts steps)."""

    def _state_arrays(self):
        """The arrays of optimizer state a step updates."""
        return []

    def _compiled_step(self, steps, i, param, grad, new, scale):
        return steps.sgd_step(param, grad, new, self.learning_rate, scale)


class SGDOptimizer(BaseOptimizer):
    """Gradient descent without momentum (``optimizer="sgd"``)."""


class MomentumOptimizer(BaseOptimizer):
    """Gradient descent with heavy-ball momentum (``optimizer="momentum"``).

    ``v = momentum * v - learning_rate * grad ; param += v``

    Parameters
    ----------
    params : list of ndarray
    learning_rate : float, default=0.01
    momentum : float, default=0.9
        Fraction of the previous update kept, in [0, 1).

    Attributes
    ----------
    velocities : list of ndarray
        The previous updates, one array per parameter.
    """

    def __init__(self, params, learning_rate=0.01, momentum=0.9):
        super().__init__(params, learning_rate)
        self.momentum = float(momentum)
        self.velocities = [np.zeros_like(param) for param in params]

    def get_updates(self, grads):
        updates = [
            self.momentum * velocity - self.learning_rate * grad
            for velocity, grad in zip(self.velocities, grads)
        ]
        self.velocities = updates
        return updates

    def _state_arrays(self):
        return self.velocities

    def _compiled_step(self, steps, i, param, grad, new, scale):
        return steps.momentum_step(param, grad, self.velocities[i].reshape(-1), new,
                                   self.learning_rate, self.momentum, scale)


class AdamOptimizer(BaseOptimizer):
    """Adam (Kingma and Ba, 2014) (``optimizer="adam"``).

    ``m = beta_1 m + (1 - beta_1) g ; v = beta_2 v + (1 - beta_2) g**2``;
    the step is ``-lr_t m / (sqrt(v) + epsilon)`` with the bias correction
    ``lr_t = learning_rate sqrt(1 - beta_2**t) / (1 - beta_1**t)``, as in
    scikit-learn's MLP.

    Parameters
    ----------
    params : list of ndarray
    learning_rate : float, default=0.001
    beta_1, beta_2 : float, default=0.9, 0.999
        Exponential decay rates of the first and second moment estimates.
    epsilon : float, default=1e-8
        Added to the denominator for numerical stability.

    Attributes
    ----------
    t : int
        Steps taken.
    ms, vs : list of ndarray
        First and second moment estimates, one array per parameter.
    """

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8):
        super().__init__(params, learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.t = 0
        self.ms = [np.zeros_like(param) for param in params]
        self.vs = [np.zeros_like(param) for param in params]

    def get_updates(self, grads):
        self.t += 1
        self.ms = [self.beta_1 * m + (1 - self.beta_1) * grad
                   for m, grad in zip(self.ms, grads)]
        self.vs = [self.beta_2 * v + (1 - self.beta_2) * grad**2
                   for v, grad in zip(self.vs, grads)]
        lr_t = self._lr_t()
        return [-lr_t * m / (np.sqrt(v) + self.epsilon) for m, v in zip(self.ms, self.vs)]

    def _lr_t(self):
        """The step size with the bias correction of step t."""
        return float(self.learning_rate * np.sqrt(1 - self.beta_2**self.t)
                     / (1 - self.beta_1**self.t))

    def _start_step(self):
        self.t += 1
        self._step_lr = self._lr_t()

    def _state_arrays(self):
        return [*self.ms, *self.vs]

    def _compiled_step(self, steps, i, param, grad, new, scale):
        return steps.adam_step(param, grad, self.ms[i].reshape(-1), self.vs[i].reshape(-1),
                               new, self._step_lr, self.beta_1, self.beta_2, self.epsilon,
                               scale)


OPTIMIZERS = {"sgd": SGDOptimizer, "momentum": MomentumOptimizer, "adam": AdamOptimizer}
