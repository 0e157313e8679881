"""PyTorch interop: a network's parameters under PyTorch's names.

:meth:`bptt.RNN.to_torch_state_dict` and :meth:`bptt.RNN.from_torch_state_dict`
(documented there) delegate here. This module reaches the network only
through the object or class it is given, so it sits below :mod:`bptt.rnn`,
which imports it; it never imports torch (tensors are taken through their
``detach``/``cpu`` methods).
"""

import numpy as np

from ._cells import CELLS
from ._validation import as_numeric_array, check_choice, check_finite


def to_torch_state_dict(net, *, rnn_prefix="", output_prefix=""):
    """The parameters of ``net`` under PyTorch's names, as new NumPy arrays.

    Parameters
    ----------
    net : bptt.RNN
    rnn_prefix, output_prefix : str, default=""
        Prepended to the recurrent and the output layer's keys.

    Returns
    -------
    state_dict : dict of str to ndarray
        ``weight_ih_l0`` (G*H, I), ``weight_hh_l0`` (G*H, H), ``bias_ih_l0``
        and ``bias_hh_l0`` (G*H,), ``weight`` (O, H), ``bias`` (O,).
    """
    p = net.params
    H = net.hidden_size
    bias_hh = np.zeros_like(p["b_h"])
    if net.cell == "gru":
        bias_hh[2 * H:] = p["b_hn"]
    return {
        f"{rnn_prefix}weight_ih_l0": p["W_xh"].copy(),
        f"{rnn_prefix}weight_hh_l0": p["W_hh"].copy(),
        f"{rnn_prefix}bias_ih_l0": p["b_h"].copy(),
        f"{rnn_prefix}bias_hh_l0": bias_hh,
        f"{output_prefix}weight": p["W_oh"].copy(),
        f"{output_prefix}bias": p["b_o"].copy(),
    }


def from_torch_state_dict(network_type, state_dict, *, cell=None, nonlinearity="tanh",
                          output_activation="identity", dtype=None, backend="cython",
                          rnn_prefix="", output_prefix=""):
    """A ``network_type`` (:class:`bptt.RNN`) built from PyTorch-named weights.

    Parameters
    ----------
    network_type : type
        The class to build, called as ``RNN`` is.
    state_dict : mapping of str to array-like
        The keys :func:`to_torch_state_dict` returns (biases optional).
    cell, nonlinearity, output_activation, dtype, backend, rnn_prefix, output_prefix
        As for :meth:`bptt.RNN.from_torch_state_dict`.

    Returns
    -------
    net : network_type
    """
    names = {
        "weight_ih": f"{rnn_prefix}weight_ih_l0",
        "weight_hh": f"{rnn_prefix}weight_hh_l0",
        "bias_ih": f"{rnn_prefix}bias_ih_l0",
        "bias_hh": f"{rnn_prefix}bias_hh_l0",
        "weight": f"{output_prefix}weight",
        "bias": f"{output_prefix}bias",
    }
    try:
        keys = list(state_dict.keys())
    except AttributeError:
        raise TypeError(
            f"state_dict must be a mapping of str to arrays; got "
            f"{type(state_dict).__name__}."
        ) from None
    unexpected = sorted(set(keys) - set(names.values()))
    if unexpected:
        raise ValueError(
            f"unexpected keys in state_dict: {unexpected}. Only a one-layer, "
            f"unidirectional RNN/LSTM/GRU without projections plus a Linear "
            f"output layer is supported, with keys {sorted(names.values())}."
        )
    missing = [names[k] for k in ("weight_ih", "weight_hh", "weight")
               if names[k] not in state_dict]
    if missing:
        raise ValueError(f"state_dict is missing the keys {missing}.")
    arrays = {}
    for short, key in names.items():
        if key in state_dict:
            value = state_dict[key]
            if hasattr(value, "detach") and hasattr(value, "cpu"):
                value = value.detach().cpu()
            arr = as_numeric_array(value, f"state_dict[{key!r}]")
            check_finite(arr, f"state_dict[{key!r}]")
            arrays[short] = arr

    def fail(short, expected):
        raise ValueError(
            f"state_dict[{names[short]!r}] must have shape {expected}; got "
            f"shape {arrays[short].shape}."
        )

    w_hh = arrays["weight_hh"]
    if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        fail("weight_hh", "(G * hidden_size, hidden_size) with G = 1, 4 or 3")
    H = w_hh.shape[1]
    gates = {CELLS[name].gates: name for name in CELLS}
    G = w_hh.shape[0] // H
    if cell is None:
        if G not in gates:
            fail("weight_hh", "(G * hidden_size, hidden_size) with G = 1 (rnn), "
                 "4 (lstm) or 3 (gru)")
        cell = gates[G]
    check_choice("cell", cell, CELLS)
    G = CELLS[cell].gates
    if w_hh.shape != (G * H, H):
        fail("weight_hh", f"({G} * hidden_size, hidden_size) for cell={cell!r}")
    w_ih = arrays["weight_ih"]
    if w_ih.ndim != 2 or w_ih.shape[0] != G * H:
        fail("weight_ih", f"({G * H}, input_size)")
    w_o = arrays["weight"]
    if w_o.ndim != 2 or w_o.shape[1] != H:
        fail("weight", f"(output_size, {H})")
    O = w_o.shape[0]
    for short, shape in (("bias_ih", (G * H,)), ("bias_hh", (G * H,)), ("bias", (O,))):
        if short in arrays and arrays[short].shape != shape:
            fail(short, shape)
    if dtype is None:
        dtype = w_hh.dtype if w_hh.dtype in (np.float32, np.float64) else np.float64
    zeros = np.zeros(G * H, dtype=w_hh.dtype)
    bias_ih = arrays.get("bias_ih", zeros)
    bias_hh = arrays.get("bias_hh", zeros)
    params = {"W_xh": w_ih, "W_hh": w_hh, "W_oh": w_o,
              "b_o": arrays.get("bias", np.zeros(O, dtype=w_o.dtype))}
    if cell == "gru":
        # r, z: both biases add up; n: only the input-side one, b_hn apart
        params["b_h"] = np.concatenate([bias_ih[:2 * H] + bias_hh[:2 * H],
                                        bias_ih[2 * H:]])
        params["b_hn"] = bias_hh[2 * H:]
    else:
        params["b_h"] = bias_ih + bias_hh
    net = network_type(w_ih.shape[1], H, O, cell=cell, nonlinearity=nonlinearity,
              output_activation=output_activation, init="identity",
              dtype=dtype, backend=backend, random_state=0)
    net.params = params
    return net
