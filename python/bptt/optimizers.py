"""Gradient-based optimizers used by the estimators.

Small objects in the manner of scikit-learn's
``sklearn/neural_network/_stochastic_optimizers.py``: each one is built for a
list of parameter arrays, keeps its own state (velocities, moment estimates)
in arrays of the same shapes, and turns a list of gradients into a list of
updates. :meth:`BaseOptimizer.update_params` adds the updates to the
parameters in place; the estimators instead call :meth:`get_updates` and
check the result is finite before applying it, so that a diverging step never
overwrites the last finite weights.
"""

import numpy as np


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
        lr_t = float(self.learning_rate * np.sqrt(1 - self.beta_2**self.t)
                / (1 - self.beta_1**self.t))
        return [-lr_t * m / (np.sqrt(v) + self.epsilon) for m, v in zip(self.ms, self.vs)]


OPTIMIZERS = {"sgd": SGDOptimizer, "momentum": MomentumOptimizer, "adam": AdamOptimizer}
