import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def seq_data(rng):
    """Small regression sequences: y is a function of the whole series."""
    X = rng.standard_normal((40, 7, 3))
    y = X[:, :, 0].mean(axis=1) + 0.5 * X[:, -1, 1]
    return X, y
