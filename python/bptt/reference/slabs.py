"""Batch slabs, the twin of src/_cellparts.pxd's ("slabs").

With ``slabs`` > 1 a cell kernel's (T', B, .) arrays hold that many
independent slabs of sequences one after another (T' = slabs * T) and its
state arrays (slabs * B, .) the slabs' states in the same order; the
cache arrays may hold slab_steps >= T timesteps per slab (a chunk of T
timesteps of longer sequences). The
compiled kernels run each slab as one part on one thread; the reference
runs them one after the other, and adds the weight gradients of the later
slabs to the first's, in the same order.
"""


def slab_slices(slabs, X, state, cache=None, slab_steps=0):
    """``(timesteps, cache timesteps, rows)`` slices of every slab, for X
    (slabs*T, B, I), a state array (slabs*B, H) and a cache array of
    slab_steps (0: T) timesteps per slab, of which X's chunk is the first T."""
    steps, rows = X.shape[0], X.shape[1]
    if slabs < 1 or steps % slabs or state.shape[0] != rows * slabs:
        raise ValueError(
            f"slabs={slabs} needs X of shape (slabs*T, B, I) and states of "
            f"shape (slabs*B, H); got {steps} timesteps, B={rows} and "
            f"{state.shape[0]} state rows."
        )
    T = steps // slabs
    stride = slab_steps if slab_steps > 0 else T
    if cache is not None and (stride < T or (slabs - 1) * stride + T > cache.shape[0]):
        raise ValueError(
            f"slab_steps={slab_steps} needs slab_steps >= T={T} and cache arrays of "
            f"at least {(slabs - 1) * stride + T} timesteps for slabs={slabs}; got "
            f"{cache.shape[0]}."
        )
    return [(slice(s * T, (s + 1) * T), slice(s * stride, s * stride + T),
             slice(s * rows, (s + 1) * rows)) for s in range(slabs)]
