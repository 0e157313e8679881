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


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """Run BLAS single-threaded: the recurrent GEMMs are small, and on a busy
    2-core machine OpenBLAS threads spin against each other (20x slower)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
