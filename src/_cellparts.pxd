# The cells' kernel calls split into parts on bptt's thread pool
# (_parallel.pxd): one argument block for every cell, and the parts they
# share. A part function takes (args, part, n_parts); its typed body is a
# fused function that a tag argument specializes, and the untyped entry
# picks float or double by is_double.
from cython cimport floating

from _rowops cimport backproject_rows, project_rows, weight_gradients_part

cimport numpy as cnp
import numpy as np


cdef struct CellArgs:
    # pointers are float* or double* as is_double says; G = n_gates / n_hidden
    const void* X            # (T, B, I)
    const void* W_xh         # (G*H, I)
    const void* W_xh_packed  # pack_weights(W_xh, transpose=True), forward only
    const void* W_hh         # (G*H, H)
    const void* W_hh_packed  # pack_weights(W_hh): transpose forward, not backward
    const void* b_h          # (G*H,)
    const void* b_hn         # GRU (H,)
    const void* h0           # (B, H)
    const void* c0           # LSTM (B, H)
    void* A                  # (T, B, G*H) pre-activations, then their gradients
    void* C                  # LSTM (T, B, H) cell states
    void* HN                 # GRU (T, B, H) W_hn h + b_hn, then dA_n
    void* H                  # (T, B, H) hidden states (Elman: A itself)
    void* Gh                 # GRU (B, 3H) work
    void* dH                 # (T, B, H) dL/dH (Elman: A itself)
    void* dh0                # (B, H)
    void* dc0                # LSTM (B, H)
    void* dW_xh
    void* dW_hh
    void* db_h
    void* db_hn              # GRU
    void* dX                 # (T, B, I) or NULL
    void* scratch            # the gradient parts' blocks (weight_gradients_part)
    int T, B, n_input, n_hidden, n_gates, truncate   # (no "I": complex.h defines it)
    bint relu, accumulate, is_double


cdef inline void project_part_of(CellArgs* a, int part, int n_parts,
                                 floating tag) noexcept nogil:
    # rows of A = X @ W_xh.T
    project_rows(<const floating*>a.X, <const floating*>a.W_xh,
                 <const floating*>a.W_xh_packed, a.T * a.B, a.n_gates, a.n_input,
                 <floating*>a.A, part, n_parts)


cdef inline void project_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        project_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        project_part_of(<CellArgs*>args, part, n_parts, <float>0)


cdef inline void gradient_part_of(CellArgs* a, int part, int n_parts,
                                  floating tag) noexcept nogil:
    # timesteps of dW_xh, dW_hh, db_h from dA (one (T, B, G*H) block); rows
    # of dX = dA @ W_xh
    weight_gradients_part(<const floating*>a.X, <const floating*>a.h0,
                          <const floating*>a.H, <const floating*>a.A, a.T, a.B, a.n_input,
                          a.n_hidden, a.n_gates, part, n_parts, a.accumulate,
                          <floating*>a.dW_xh, <floating*>a.dW_hh, <floating*>a.db_h,
                          <floating*>a.scratch)
    if a.dX != NULL:
        backproject_rows(<const floating*>a.A, <const floating*>a.W_xh, a.T * a.B,
                         a.n_gates, a.n_input, <floating*>a.dX, part, n_parts)


cdef inline void gradient_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        gradient_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        gradient_part_of(<CellArgs*>args, part, n_parts, <float>0)


cdef inline object gradient_scratch(CellArgs* a, int n_parts, Py_ssize_t block):
    """Scratch for the gradient parts 1..n_parts-1, ``block`` elements each;
    points a.scratch at it and returns its owner (keep it alive)."""
    scratch = np.empty((n_parts - 1) * block,
                       dtype=np.float64 if a.is_double else np.float32)
    a.scratch = cnp.PyArray_DATA(scratch)
    return scratch
