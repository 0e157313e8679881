"""Output layer and losses, NumPy reference (twin of ``src/_output.pyx``).

All timesteps are flattened into rows, N = T * B (or B for a loss at the
last step only)::

    Z  = Hs @ W_oh.T + b_o        one GEMM
    Y  = phi(Z)                   identity, sigmoid or softmax (over O)

Losses take the mean over the contract's elements and return dZ = dL/dZ:

    mse                  L = mean((Y - y)**2)            dY = 2 (Y - y) / (N O)
    binary_cross_entropy L = mean(-y log Y - (1-y) log(1-Y)), Y = sigmoid(Z)
                         dZ = (Y - y) / (N O)
    cross_entropy        L = mean(logsumexp(Z) - Z[label]), Y = softmax(Z)
                         dZ = (Y - onehot(label)) / N

Backward::

    dW_oh = dZ.T @ Hs       db_o = sum_rows dZ       dHs = dZ @ W_oh

With row weights w (one per row, the estimators' sample weights) each row's
loss and dZ are multiplied by its w and the denominator is the weights' sum
(times O for mse and binary_cross_entropy): the weighted mean.

Activation codes: 0 identity, 1 sigmoid, 2 softmax.
"""

import numpy as np
from scipy.special import expit

IDENTITY, SIGMOID, SOFTMAX = 0, 1, 2
# output_layer's loss codes: positions in bptt.rnn.LOSSES
MSE, CROSS_ENTROPY, BINARY_CROSS_ENTROPY = 0, 1, 2


def output_forward(Hs, W_oh, b_o, activation, Z, Y):
    """Z = Hs @ W_oh.T + b_o ; Y = phi(Z).

    Parameters
    ----------
    Hs : ndarray of shape (N, H)      # IN
    W_oh : ndarray of shape (O, H)    # IN
    b_o : ndarray of shape (O,)       # IN
    activation : int                  # 0 identity, 1 sigmoid, 2 softmax
    Z : ndarray of shape (N, O)       # OUT pre-activations
    Y : ndarray of shape (N, O)       # OUT outputs
    """
    # Z = Hs @ W_oh.T + b_o
    np.matmul(Hs, W_oh.T, out=Z)
    Z += b_o
    if activation == IDENTITY:
        Y[...] = Z
    elif activation == SIGMOID:
        # sigmoid(z) = 1 / (1 + exp(-z))
        Y[...] = expit(Z)
    else:
        # softmax(z) = exp(z - max z) / sum exp(z - max z)
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        Y[...] = E / E.sum(axis=1, keepdims=True)


def mse_grad(Y, target, activation, dZ, denominator, w=None):
    """Squared error summed over these rows / denominator, and dL/dZ through phi.

    ``denominator`` is the number of elements the mean runs over (N * O when
    these rows are all of them; more when the rows are one chunk of them).

    Parameters
    ----------
    Y : ndarray of shape (N, O)       # IN outputs phi(Z)
    target : ndarray of shape (N, O)  # IN
    activation : int
    dZ : ndarray of shape (N, O)      # OUT
    denominator : float

    Returns
    -------
    loss : float
    """
    diff = Y - target
    # with row weights w (N, 1): each row's squares and dY times its w
    loss = np.sum(diff * diff if w is None else w * diff * diff) / denominator
    # dY = 2 (Y - y) / (N O)
    dY = 2 * diff / denominator if w is None else 2 * w * diff / denominator
    if activation == IDENTITY:
        dZ[...] = dY
    elif activation == SIGMOID:
        # sigmoid' = Y (1 - Y)
        dZ[...] = dY * Y * (1 - Y)
    else:
        # softmax Jacobian: dZ = Y * (dY - sum(dY * Y))
        dZ[...] = Y * (dY - np.sum(dY * Y, axis=1, keepdims=True))
    return float(loss)


def binary_cross_entropy_grad(Z, Y, target, dZ, denominator, w=None):
    """Binary cross-entropy of Y = sigmoid(Z), computed from Z for stability.

    Parameters
    ----------
    Z : ndarray of shape (N, O)       # IN
    Y : ndarray of shape (N, O)       # IN sigmoid(Z)
    target : ndarray of shape (N, O)  # IN values in [0, 1]
    dZ : ndarray of shape (N, O)      # OUT
    denominator : float               # elements of the mean (N * O for all rows)

    Returns
    -------
    loss : float
    """
    # -y log s(z) - (1-y) log(1-s(z)) = max(z, 0) - z y + log(1 + exp(-|z|))
    losses = np.maximum(Z, 0) - Z * target + np.log1p(np.exp(-np.abs(Z)))
    # dZ = (sigmoid(z) - y) / (N O)
    dZ[...] = (Y - target) / denominator
    if w is not None:  # row weights (N, 1)
        losses = losses * w
        dZ *= w
    return float(np.sum(losses) / denominator)


def cross_entropy_grad(Z, Y, labels, dZ, denominator, w=None):
    """Cross-entropy of Y = softmax(Z) against integer labels.

    Parameters
    ----------
    Z : ndarray of shape (N, O)       # IN
    Y : ndarray of shape (N, O)       # IN softmax(Z)
    labels : ndarray of shape (N,)    # IN int64 in [0, O)
    dZ : ndarray of shape (N, O)      # OUT
    denominator : float               # rows of the mean (N for all rows)

    Returns
    -------
    loss : float
    """
    N = Z.shape[0]
    rows = np.arange(N)
    zmax = Z.max(axis=1)
    # -log softmax(z)[label] = max z + log sum exp(z - max z) - z[label]
    logsumexp = zmax + np.log(np.sum(np.exp(Z - zmax[:, None]), axis=1))
    losses = logsumexp - Z[rows, labels]
    # dZ = (softmax(z) - onehot(label)) / N
    dZ[...] = Y / denominator
    dZ[rows, labels] -= 1.0 / denominator
    if w is not None:  # row weights (N, 1)
        losses = losses * w[:, 0]
        dZ *= w
    loss = np.sum(losses) / denominator
    return float(loss)


def output_backward(Hs, W_oh, dZ, dW_oh, db_o, dHs, accumulate=False):
    """Gradients of the output layer (added to dW_oh, db_o when ``accumulate``).

    Parameters
    ----------
    Hs : ndarray of shape (N, H)      # IN
    W_oh : ndarray of shape (O, H)    # IN
    dZ : ndarray of shape (N, O)      # IN
    dW_oh : ndarray of shape (O, H)   # OUT dZ.T @ Hs
    db_o : ndarray of shape (O,)      # OUT column sums of dZ
    dHs : ndarray of shape (N, H)     # OUT dZ @ W_oh
    accumulate : bool
    """
    if not accumulate:
        dW_oh[...] = 0
        db_o[...] = 0
    # dW_oh += dZ.T @ Hs
    dW_oh += dZ.T @ Hs
    # db_o += sum_rows dZ
    db_o += dZ.sum(axis=0)
    # dHs = dZ @ W_oh
    np.matmul(dZ, W_oh, out=dHs)


def output_layer(Hs, W_oh, b_o, activation, loss, target, denominator, Z, Y, dZ,
                 dW_oh, db_o, dHs, accumulate=False, row_weights=None):
    """Forward, loss and backward of the output layer over N rows.

    Parameters
    ----------
    Hs, W_oh, b_o, activation          # IN, as output_forward
    loss : int                         # 0 mse, 1 cross_entropy, 2 binary_cross_entropy
    target : ndarray                   # IN (N, O) floats, or (N,) int64 labels
    denominator : float                # elements (cross-entropy: rows) of the mean
    Z, Y, dZ : ndarray of shape (N, O) # OUT
    dW_oh, db_o, dHs, accumulate       # OUT, as output_backward
    row_weights : ndarray of shape (N,) or None  # IN each row's weight, laid
                                       #   out as target's rows (None: all 1)

    Returns
    -------
    loss : float
        The loss summed over these rows / denominator.
    """
    output_forward(Hs, W_oh, b_o, activation, Z, Y)
    w = None if row_weights is None else row_weights[:Hs.shape[0], None]
    if loss == MSE:
        value = mse_grad(Y, target, activation, dZ, denominator, w)
    elif loss == BINARY_CROSS_ENTROPY:
        value = binary_cross_entropy_grad(Z, Y, target, dZ, denominator, w)
    else:
        value = cross_entropy_grad(Z, Y, target, dZ, denominator, w)
    output_backward(Hs, W_oh, dZ, dW_oh, db_o, dHs, accumulate)
    return value
