"""Elman cell, NumPy reference (twin of ``src/_elman.pyx``).

Notation (time-major, as in the kernels)::

    X   (T, B, I)   inputs
    H   (T, B, H)   hidden states h_1 .. h_T (H[t] is h_{t+1} in 1-based maths)
    h0  (B, H)      state before the first step

    A      = X @ W_xh.T + b_h          all timesteps, one GEMM
    A[t]  += H[t-1] @ W_hh.T           one GEMM per step (H[-1] := h0)
    H[t]   = f(A[t])                   f = tanh or relu

Backward, given dH = dL/dH from the layer above::

    dh     = dH[t] + dA[t+1] @ W_hh     dL/dh_t, the output's and the next step's
    dA[t]  = dh * f'(H[t])
    dW_xh  = sum_t dA[t].T @ X[t]       one GEMM
    dW_hh  = sum_t dA[t].T @ H[t-1]     one GEMM (plus dA[0].T @ h0)
    db_h   = sum_t,b dA[t]
    dh0    = dA[0] @ W_hh
    dX     = dA @ W_xh                  (input gradient, for stacked layers)

f' comes from the cached outputs: tanh' = 1 - H**2, relu' = (H > 0).

Truncated BPTT with window k: at a window start t (t % k == 0, t > 0) the
carried gradient dA[t] @ W_hh is dropped, which is the gradient of the
loss with h_{t-1} detached.
"""

import numpy as np

from . import row_norms


def activate(A, relu):
    """Apply f in place to A and return it: tanh, or relu when ``relu``."""
    if relu:
        np.maximum(A, 0, out=A)
    else:
        np.tanh(A, out=A)
    return A


def activation_grad(H, relu):
    """f'(A) from the cached outputs H = f(A)."""
    if relu:
        return (H > 0).astype(H.dtype)
    return 1 - H * H


def elman_forward(X, W_xh, W_hh, b_h, h0, relu, H):
    """Run the recurrence over all timesteps and keep every hidden state.

    Parameters
    ----------
    X : ndarray of shape (T, B, I)            # IN
    W_xh : ndarray of shape (H, I)            # IN
    W_hh : ndarray of shape (H, H)            # IN
    b_h : ndarray of shape (H,)               # IN
    h0 : ndarray of shape (B, H)              # IN
    relu : bool                               # f = relu if True else tanh
    H : ndarray of shape (T, B, H)            # OUT hidden states
    """
    # A = X @ W_xh.T + b_h, all timesteps at once (A lives in H)
    np.matmul(X, W_xh.T, out=H)
    H += b_h
    h_prev = h0
    for t in range(X.shape[0]):
        # A[t] += H[t-1] @ W_hh.T
        H[t] += h_prev @ W_hh.T
        # H[t] = f(A[t])
        activate(H[t], relu)
        h_prev = H[t]


def elman_backward(X, W_xh, W_hh, h0, H, dH, relu, truncate,
                   dW_xh, dW_hh, db_h, dh0, accumulate=False, dX=None, dh_out=None,
                   norms_out=None, norm_means=None):
    """Backpropagate through time.

    Parameters
    ----------
    X : ndarray of shape (T, B, I)            # IN
    W_xh : ndarray of shape (H, I)            # IN (used for dX only)
    W_hh : ndarray of shape (H, H)            # IN
    h0 : ndarray of shape (B, H)              # IN
    H : ndarray of shape (T, B, H)            # IN hidden states from elman_forward
    dH : ndarray of shape (T, B, H)           # IN dL/dH; WORK: overwritten with dA
    relu : bool
    truncate : int                            # window length; 0 for full BPTT
    dW_xh, dW_hh, db_h : ndarray              # OUT, shapes of the parameters
    dh0 : ndarray of shape (B, H)             # OUT dL/dh0
    accumulate : bool                         # add into dW_xh, dW_hh, db_h
    dX : ndarray of shape (T, B, I) or None   # OUT dL/dX, skipped when None
    dh_out : ndarray of shape (T, B, H) or None   # OUT total dL/dh_t, skipped when None
    norms_out : float64 ndarray of shape (1, T, B) or None   # OUT ||dL/dh_t|| per row
    norm_means : float64 ndarray of shape (1, T) or None     # OUT their mean over B

    Chunks, truncation, accumulate, dh_out and norms_out: bptt/reference/__init__.py.
    """
    T, B, _ = X.shape
    n_hidden = H.shape[2]
    dA = dH
    # dL/dH[t] from step t+1: dA[t+1] @ W_hh
    dh_next = np.zeros((B, n_hidden), dtype=H.dtype)
    for t in range(T - 1, -1, -1):
        # backprop into h: dH[t] + dA[t+1] @ W_hh
        dA[t] += dh_next
        if dh_out is not None:
            dh_out[t] = dA[t]
        if norms_out is not None:
            norms_out[0, t] = row_norms(dA[t])
        if norm_means is not None:
            norm_means[0, t] = norms_out[0, t].mean()
        # backprop through f
        dA[t] *= activation_grad(H[t], relu)
        # backprop into H[t-1]; no gradient crosses a window boundary
        if truncate and t > 0 and t % truncate == 0:
            dh_next = np.zeros_like(dh_next)
        else:
            dh_next = dA[t] @ W_hh
    dh0[...] = dh_next
    if not accumulate:
        dW_xh[...] = 0
        dW_hh[...] = 0
        db_h[...] = 0
    dA2 = dA.reshape(T * B, n_hidden)
    # dW_xh += sum_t dA[t].T @ X[t]
    dW_xh += dA2.T @ X.reshape(T * B, -1)
    # dW_hh += dA[0].T @ h0 + sum_{t>0} dA[t].T @ H[t-1]
    dW_hh += dA[0].T @ h0
    dW_hh += dA[1:].reshape(-1, n_hidden).T @ H[:-1].reshape(-1, n_hidden)
    # db_h += sum_{t,b} dA[t]
    db_h += dA2.sum(axis=0)
    if dX is not None:
        # dX = dA @ W_xh
        np.matmul(dA, W_xh, out=dX)
