"""LSTM cell, NumPy reference (twin of ``src/_lstm.pyx``).

Notation (time-major, as in the kernels; PyTorch's gate order i, f, g, o)::

    X   (T, B, I)    inputs
    G   (T, B, 4H)   gate outputs [i | f | g | o] per step
    C   (T, B, H)    cell states c_1 .. c_T
    H   (T, B, H)    hidden states h_1 .. h_T (H[-1] := h0, C[-1] := c0)

    A      = X @ W_xh.T + b_h                one GEMM, all timesteps (A lives in G)
    A[t]  += H[t-1] @ W_hh.T                 one GEMM per step
    i, f, o = sigmoid(A[t]_i, A[t]_f, A[t]_o) ; g = tanh(A[t]_g)
    C[t]   = f * C[t-1] + i * g
    H[t]   = o * tanh(C[t])

Backward, given dH = dL/dH from the layer above; dc is the carried dL/dC::

    dh     = dH[t] + dG[t+1] @ W_hh          dL/dh_t
    dc     = dc + dh * o * (1 - tanh(C[t])**2)   dL/dc_t
    do     = dh * tanh(C[t]) * o * (1 - o)
    di     = dc * g * i * (1 - i)
    df     = dc * C[t-1] * f * (1 - f)
    dg     = dc * i * (1 - g**2)
    dc     = dc * f                          (carried to step t-1)
    dW_xh  = dG.T @ X ; dW_hh = dG[1:].T @ H[:-1] + dG[0].T @ h0
    db_h   = sum_t,b dG ; dh0 = dG[0] @ W_hh ; dc0 = dc ; dX = dG @ W_xh

The derivatives come from the cached gate outputs (sigmoid' = s (1 - s),
tanh' = 1 - t**2), never from recomputed pre-activations. Backward consumes
the cache: G is overwritten with dG = dL/dA.

Truncated BPTT with window k: at a window start t (t % k == 0, t > 0) both
carries into step t-1 (dG[t] @ W_hh and dc * f) are dropped, which is the
gradient of the loss with (h_{t-1}, c_{t-1}) detached.
"""

import numpy as np
from scipy.special import expit

from . import row_norms


def lstm_forward(X, W_xh, W_hh, b_h, h0, c0, G, C, H):
    """Run the recurrence over all timesteps and keep what backward needs.

    Parameters
    ----------
    X : ndarray of shape (T, B, I)            # IN
    W_xh : ndarray of shape (4H, I)           # IN
    W_hh : ndarray of shape (4H, H)           # IN
    b_h : ndarray of shape (4H,)              # IN
    h0, c0 : ndarray of shape (B, H)          # IN initial hidden and cell state
    G : ndarray of shape (T, B, 4H)           # OUT gate outputs i, f, g, o
    C : ndarray of shape (T, B, H)            # OUT cell states
    H : ndarray of shape (T, B, H)            # OUT hidden states
    """
    # A = X @ W_xh.T + b_h, all timesteps at once (A lives in G)
    np.matmul(X, W_xh.T, out=G)
    G += b_h
    h_prev, c_prev = h0, c0
    for t in range(X.shape[0]):
        # A[t] += H[t-1] @ W_hh.T
        G[t] += h_prev @ W_hh.T
        # gate outputs, in place: i, f, o = sigmoid ; g = tanh
        i, f, g, o = np.split(G[t], 4, axis=1)
        expit(i, out=i)
        expit(f, out=f)
        np.tanh(g, out=g)
        expit(o, out=o)
        # C[t] = f * C[t-1] + i * g
        C[t] = f * c_prev + i * g
        # H[t] = o * tanh(C[t])
        H[t] = o * np.tanh(C[t])
        h_prev, c_prev = H[t], C[t]


def lstm_backward(X, W_xh, W_hh, h0, c0, G, C, H, dH, truncate,
                  dW_xh, dW_hh, db_h, dh0, dc0, accumulate=False, dX=None,
                  dh_out=None, dc_out=None, norms_out=None, norm_means=None):
    """Backpropagate through time.

    Parameters
    ----------
    X : ndarray of shape (T, B, I)            # IN
    W_xh : ndarray of shape (4H, I)           # IN (used for dX only)
    W_hh : ndarray of shape (4H, H)           # IN
    h0, c0 : ndarray of shape (B, H)          # IN
    G : ndarray of shape (T, B, 4H)           # IN gate outputs; WORK: becomes dG
    C : ndarray of shape (T, B, H)            # IN cell states
    H : ndarray of shape (T, B, H)            # IN hidden states
    dH : ndarray of shape (T, B, H)           # IN dL/dH; WORK: gets the carries
    truncate : int                            # window length; 0 for full BPTT
    dW_xh, dW_hh, db_h : ndarray              # OUT, shapes of the parameters
    dh0 : ndarray of shape (B, H)             # OUT dL/dh0
    dc0 : ndarray of shape (B, H)             # IN dL/dC[T-1] from later steps (zeros
                                              #   for a whole sequence); OUT dL/dc0
    accumulate : bool                         # add into dW_xh, dW_hh, db_h
    dX : ndarray of shape (T, B, I) or None   # OUT dL/dX, skipped when None
    dh_out, dc_out : ndarray of shape (T, B, H) or None   # OUT total dL/dh_t, dL/dc_t
    norms_out : float64 ndarray of shape (2, T, B) or None   # OUT ||dL/dh_t||, ||dL/dc_t||
                                              #   per row ((1, T, B): ||dL/dh_t|| only)
    norm_means : float64 ndarray of shape (2, T) or None     # OUT their means over B

    Chunks, truncation, accumulate, dh_out and norms_out: bptt/reference/__init__.py.
    """
    T = X.shape[0]
    n_hidden = H.shape[2]
    dG = G
    # the cell-state carry: dL/dC[t], starting from what later steps sent
    dc = dc0
    for t in range(T - 1, -1, -1):
        i, f, g, o = (v.copy() for v in np.split(G[t], 4, axis=1))
        c_prev = C[t - 1] if t > 0 else c0
        tanh_c = np.tanh(C[t])
        # dH[t] already holds dL/dH[t] plus dG[t+1] @ W_hh
        dh = dH[t]
        # backprop through H[t] = o * tanh(C[t]) into dc
        dc += dh * o * (1 - tanh_c * tanh_c)
        if dh_out is not None:
            dh_out[t] = dh
        if dc_out is not None:
            dc_out[t] = dc
        if norms_out is not None:
            norms_out[0, t] = row_norms(dh)
            if norms_out.shape[0] > 1:
                norms_out[1, t] = row_norms(dc)
        if norm_means is not None:
            norm_means[:, t] = norms_out[:, t].mean(axis=-1)
        # backprop through the gates, derivatives from their outputs
        di, df, dg, do = np.split(dG[t], 4, axis=1)
        di[...] = dc * g * i * (1 - i)
        df[...] = dc * c_prev * f * (1 - f)
        dg[...] = dc * i * (1 - g * g)
        do[...] = dh * tanh_c * o * (1 - o)
        # backprop into C[t-1]
        dc *= f
        if truncate and t > 0 and t % truncate == 0:
            # no gradient crosses a window boundary
            dc[...] = 0
        elif t > 0:
            # backprop into H[t-1]: dH[t-1] += dG[t] @ W_hh
            dH[t - 1] += dG[t] @ W_hh
    # dh0 = dG[0] @ W_hh ; dc0 holds the last carry
    np.matmul(dG[0], W_hh, out=dh0)
    if not accumulate:
        dW_xh[...] = 0
        dW_hh[...] = 0
        db_h[...] = 0
    dG2 = dG.reshape(-1, 4 * n_hidden)
    # dW_xh (+)= dG.T @ X
    dW_xh += dG2.T @ X.reshape(dG2.shape[0], -1)
    # dW_hh (+)= dG[0].T @ h0 + dG[1:].T @ H[:-1]
    dW_hh += dG[0].T @ h0
    dW_hh += dG[1:].reshape(-1, 4 * n_hidden).T @ H[:-1].reshape(-1, n_hidden)
    # db_h (+)= sum_{t,b} dG
    db_h += dG2.sum(axis=0)
    if dX is not None:
        # dX = dG @ W_xh
        np.matmul(dG, W_xh, out=dX)
