"""GRU cell, NumPy reference (twin of ``src/_gru.pyx``).

Notation (time-major, as in the kernels; PyTorch's gate order r, z, n)::

    X   (T, B, I)    inputs
    G   (T, B, 3H)   gate outputs [r | z | n] per step
    HN  (T, B, H)    W_hn H[t-1] + b_hn per step (the reset gate multiplies it)
    H   (T, B, H)    hidden states h_1 .. h_T (H[-1] := h0)
    Gh  (B, 3H)      per-step work: H[t-1] @ W_hh.T

b_h holds the input-side biases with the r and z biases of both sides
folded in (b_ir + b_hr, b_iz + b_hz, b_in); b_hn stays apart because r
multiplies it::

    A      = X @ W_xh.T + b_h               one GEMM, all timesteps (A lives in G)
    Gh     = H[t-1] @ W_hh.T                one GEMM per step, all three gates
    r      = sigmoid(A[t]_r + Gh_r)
    z      = sigmoid(A[t]_z + Gh_z)
    HN[t]  = Gh_n + b_hn
    n      = tanh(A[t]_n + r * HN[t])
    H[t]   = (1 - z) * n + z * H[t-1]

Backward, given dH = dL/dH from the layer above. dA is dL/dA (the input
side), dGh = dL/dGh (the hidden side); they differ only in the n block::

    dn_a   = dH[t] * (1 - z) * (1 - n**2)           dA_n
    dz_a   = dH[t] * (H[t-1] - n) * z * (1 - z)     dA_z = dGh_z
    dr_a   = dn_a * HN[t] * r * (1 - r)             dA_r = dGh_r
    dGh_n  = dn_a * r
    dH[t-1] += dH[t] * z + dGh[t] @ W_hh            one GEMM per step
    dW_xh  = dA.T @ X ; dW_hh = dGh[1:].T @ H[:-1] + dGh[0].T @ h0
    db_h   = sum dA ; db_hn = sum dGh_n ; dX = dA @ W_xh

Backward consumes the cache: G becomes dGh, HN becomes dA_n (so dA is
[dGh_r | dGh_z | HN], and the products with dA are split at row 2H).

Truncated BPTT with window k: at a window start t (t % k == 0, t > 0) the
carry into H[t-1] (both dH[t] * z and dGh[t] @ W_hh) is dropped.
"""

import numpy as np
from scipy.special import expit

from . import row_norms


def gru_forward(X, W_xh, W_hh, b_h, b_hn, h0, G, HN, H, Gh):
    """Run the recurrence over all timesteps and keep what backward needs.

    Parameters
    ----------
    X : ndarray of shape (T, B, I)            # IN
    W_xh : ndarray of shape (3H, I)           # IN
    W_hh : ndarray of shape (3H, H)           # IN
    b_h : ndarray of shape (3H,)              # IN
    b_hn : ndarray of shape (H,)              # IN
    h0 : ndarray of shape (B, H)              # IN
    G : ndarray of shape (T, B, 3H)           # OUT gate outputs r, z, n
    HN : ndarray of shape (T, B, H)           # OUT W_hn H[t-1] + b_hn
    H : ndarray of shape (T, B, H)            # OUT hidden states
    Gh : ndarray of shape (B, 3H)             # WORK
    """
    # A = X @ W_xh.T + b_h, all timesteps at once (A lives in G)
    np.matmul(X, W_xh.T, out=G)
    G += b_h
    h_prev = h0
    for t in range(X.shape[0]):
        # Gh = H[t-1] @ W_hh.T, the hidden products of all three gates
        np.matmul(h_prev, W_hh.T, out=Gh)
        r, z, n = np.split(G[t], 3, axis=1)
        gh_r, gh_z, gh_n = np.split(Gh, 3, axis=1)
        # r = sigmoid(A_r + Gh_r) ; z = sigmoid(A_z + Gh_z)
        r += gh_r
        expit(r, out=r)
        z += gh_z
        expit(z, out=z)
        # HN[t] = Gh_n + b_hn
        np.add(gh_n, b_hn, out=HN[t])
        # n = tanh(A_n + r * HN[t])
        n += r * HN[t]
        np.tanh(n, out=n)
        # H[t] = (1 - z) * n + z * H[t-1]
        H[t] = (1 - z) * n + z * h_prev
        h_prev = H[t]


def gru_backward(X, W_xh, W_hh, h0, G, HN, H, dH, truncate,
                 dW_xh, dW_hh, db_h, db_hn, dh0, accumulate=False, dX=None, dh_out=None,
                 norms_out=None, norm_means=None):
    """Backpropagate through time.

    Parameters
    ----------
    X : ndarray of shape (T, B, I)            # IN
    W_xh : ndarray of shape (3H, I)           # IN (used for dX only)
    W_hh : ndarray of shape (3H, H)           # IN
    h0 : ndarray of shape (B, H)              # IN
    G : ndarray of shape (T, B, 3H)           # IN gate outputs; WORK: becomes dGh
    HN : ndarray of shape (T, B, H)           # IN W_hn h + b_hn; WORK: becomes dA_n
    H : ndarray of shape (T, B, H)            # IN hidden states
    dH : ndarray of shape (T, B, H)           # IN dL/dH; WORK: gets the carries
    truncate : int                            # window length; 0 for full BPTT
    dW_xh, dW_hh, db_h, db_hn : ndarray       # OUT, shapes of the parameters
    dh0 : ndarray of shape (B, H)             # OUT dL/dh0
    accumulate : bool                         # add into dW_xh, dW_hh, db_h, db_hn
    dX : ndarray of shape (T, B, I) or None   # OUT dL/dX, skipped when None
    dh_out : ndarray of shape (T, B, H) or None   # OUT total dL/dh_t, skipped when None
    norms_out : float64 ndarray of shape (1, T, B) or None   # OUT ||dL/dh_t|| per row
    norm_means : float64 ndarray of shape (1, T) or None     # OUT their mean over B

    Chunks, truncation, accumulate, dh_out and norms_out: bptt/reference/__init__.py.
    """
    T = X.shape[0]
    n_hidden = H.shape[2]
    n2 = 2 * n_hidden
    dGh, dAn = G, HN
    for t in range(T - 1, -1, -1):
        r, z, n = (v.copy() for v in np.split(G[t], 3, axis=1))
        hn = HN[t].copy()
        h_prev = H[t - 1] if t > 0 else h0
        # dH[t] already holds dL/dH[t] plus the carry from step t+1
        dh = dH[t]
        if dh_out is not None:
            dh_out[t] = dh
        if norms_out is not None:
            norms_out[0, t] = row_norms(dh)
        if norm_means is not None:
            norm_means[0, t] = norms_out[0, t].mean()
        # backprop through H[t] = (1 - z) * n + z * H[t-1] and the tanh of n
        dn_a = dh * (1 - z) * (1 - n * n)
        dz_a = dh * (h_prev - n) * z * (1 - z)
        # backprop through n's pre-activation A_n + r * HN[t]
        dr_a = dn_a * hn * r * (1 - r)
        dgh_r, dgh_z, dgh_n = np.split(dGh[t], 3, axis=1)
        dgh_r[...] = dr_a
        dgh_z[...] = dz_a
        dgh_n[...] = dn_a * r
        dAn[t] = dn_a
        if t == 0:
            # dh0 = dH[0] * z + dGh[0] @ W_hh
            dh0[...] = dh * z + dGh[0] @ W_hh
        elif not (truncate and t % truncate == 0):
            # backprop into H[t-1]: dH[t-1] += dH[t] * z + dGh[t] @ W_hh
            dH[t - 1] += dh * z + dGh[t] @ W_hh
    if not accumulate:
        for grad in (dW_xh, dW_hh, db_h, db_hn):
            grad[...] = 0
    rows = dGh.shape[0] * dGh.shape[1]
    dGh2 = dGh.reshape(rows, 3 * n_hidden)
    dAn2 = dAn.reshape(rows, n_hidden)
    X2 = X.reshape(rows, -1)
    # dW_xh (+)= dA.T @ X, with dA = [dGh_r | dGh_z | dA_n]
    dW_xh[:n2] += dGh2[:, :n2].T @ X2
    dW_xh[n2:] += dAn2.T @ X2
    # dW_hh (+)= dGh[0].T @ h0 + dGh[1:].T @ H[:-1]
    dW_hh += dGh[0].T @ h0
    dW_hh += dGh[1:].reshape(-1, 3 * n_hidden).T @ H[:-1].reshape(-1, n_hidden)
    # db_h (+)= sum dA ; db_hn (+)= sum dGh_n
    db_h[:n2] += dGh2[:, :n2].sum(axis=0)
    db_h[n2:] += dAn2.sum(axis=0)
    db_hn += dGh2[:, n2:].sum(axis=0)
    if dX is not None:
        # dX = dA @ W_xh
        np.matmul(dGh[:, :, :n2], W_xh[:n2], out=dX)
        dX += dAn @ W_xh[n2:]
