"""Batch slabs, the twin of src/_cellparts.pxd's ("slabs").

With ``slabs`` > 1 a cell kernel's (T', B, .) arrays hold that many
independent slabs of sequences one after another (T' = slabs * T) and its
state arrays (slabs * B, .) the slabs' states in the same order. The
compiled kernels run each slab as one part on one thread; the reference
runs them one after the other, and adds the weight gradients of the later
slabs to the first's, in the same order.
"""


def slab_slices(slabs, X, state):
    """``(timesteps, rows)`` slices of every slab, for X (slabs*T, B, I) and
    a state array (slabs*B, H)."""
    steps, rows = X.shape[0], X.shape[1]
    if slabs < 1 or steps % slabs or state.shape[0] != rows * slabs:
        raise ValueError(
            f"slabs={slabs} needs X of shape (slabs*T, B, I) and states of "
            f"shape (slabs*B, H); got {steps} timesteps, B={rows} and "
            f"{state.shape[0]} state rows."
        )
    T = steps // slabs
    return [(slice(s * T, (s + 1) * T), slice(s * rows, (s + 1) * rows))
            for s in range(slabs)]
