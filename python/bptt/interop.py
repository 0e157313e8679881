"""PyTorch interop: a network's parameters under PyTorch's names.

:meth:`bptt.RNN.to_torch_state_dict` and :meth:`bptt.RNN.from_torch_state_dict`
(documented there) delegate here. This module reaches the network only
through the object or class it is given, so it sits below :mod:`bptt.rnn`,
which imports it; it never imports torch (tensors are taken through their
``detach``/``cpu`` methods). What PyTorch calls each cell and how its two
biases fold into bptt's are in the cell's :class:`~bptt._cells.CellSpec`
(``torch_module``, ``torch_bias_apart``). Words as docs/glossary.md
defines them.
"""

import re

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
    spec = _torch_spec(net.cell)
    p = net.params
    H = net.hidden_size
    # bias_ih takes all of b_h; bias_hh is zero but for the blocks kept apart
    bias_hh = np.zeros_like(p["b_h"])
    for gate, name in spec.torch_bias_apart.items():
        bias_hh[spec.gate_rows(gate, H)] = p[name]
    return {
        f"{rnn_prefix}weight_ih_l0": p["W_xh"].copy(),
        f"{rnn_prefix}weight_hh_l0": p["W_hh"].copy(),
        f"{rnn_prefix}bias_ih_l0": p["b_h"].copy(),
        f"{rnn_prefix}bias_hh_l0": bias_hh,
        f"{output_prefix}weight": p["W_oh"].copy(),
        f"{output_prefix}bias": p["b_o"].copy(),
    }


def _torch_spec(cell):
    """The CellSpec of ``cell``, refused when PyTorch has no such module."""
    spec = CELLS[cell]
    if spec.torch_module is None:
        raise ValueError(f"cell={cell!r} has no PyTorch counterpart; the cells that "
                         f"have one are {_torch_cells()}.")
    return spec


def _torch_cells():
    return [name for name, spec in CELLS.items() if spec.torch_module is not None]


def _state_dict_keys(state_dict):
    """The keys of a state dict, or a TypeError when it is not a mapping."""
    try:
        return list(state_dict.keys())
    except AttributeError:
        raise TypeError(
            f"state_dict must be a mapping of str to arrays; got "
            f"{type(state_dict).__name__}."
        ) from None


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
    keys = _state_dict_keys(state_dict)
    unexpected = sorted(set(keys) - set(names.values()))
    if unexpected:
        modules = "/".join(dict.fromkeys(CELLS[c].torch_module for c in _torch_cells()))
        raise ValueError(
            f"unexpected keys in state_dict: {unexpected}. Only a one-layer, "
            f"unidirectional {modules} without projections plus a Linear "
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

    if cell is not None:
        check_choice("cell", cell, CELLS)
        _torch_spec(cell)
    w_hh = arrays["weight_hh"]
    gate_counts = ", ".join(f"{CELLS[c].n_gates} ({c})" for c in _torch_cells())
    if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        fail("weight_hh", f"(G * hidden_size, hidden_size) with G = {gate_counts}")
    H = w_hh.shape[1]
    G = w_hh.shape[0] // H
    if cell is None:
        # the shapes name the cell only when one cell has G gates; two cells
        # with as many gates (an LSTM and a peephole LSTM) need cell=
        candidates = [c for c in _torch_cells() if CELLS[c].n_gates == G]
        if not candidates:
            fail("weight_hh", f"(G * hidden_size, hidden_size) with G = {gate_counts}")
        if len(candidates) > 1:
            raise ValueError(
                f"state_dict[{names['weight_hh']!r}] has {G} gate blocks, as the cells "
                f"{candidates} have: pass cell= to say which it is.")
        cell = candidates[0]
    spec = CELLS[cell]
    G = spec.n_gates
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
    # the two biases add up, but for the blocks of bias_hh kept apart (the
    # GRU's n block: b_hn), where b_h holds bias_ih alone
    b_h = bias_ih + bias_hh
    for gate, name in spec.torch_bias_apart.items():
        rows = spec.gate_rows(gate, H)
        b_h[rows] = bias_ih[rows]
        params[name] = bias_hh[rows]
    params["b_h"] = b_h
    net = network_type(w_ih.shape[1], H, O, cell=cell, nonlinearity=nonlinearity,
              output_activation=output_activation, init="identity",
              dtype=dtype, backend=backend, random_state=0)
    net.params = params
    return net


# ------------------------------------------------ layers and directions
#
# The per-run conversions above know one layer and direction (PyTorch's
# ``_l0`` names, bptt's unsuffixed ones); these loop them over every layer
# l and direction d, renaming ``_l0`` <-> ``_l{l}[_reverse]`` (PyTorch) and
# "" <-> ``_l{l}``/``_reverse`` (bptt, bptt._bptt.suffix).

def _torch_suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction else "")


class _Run:
    """One run of a network, as the per-run functions read a network (or
    build one: called like the class, then given ``params``)."""

    def __init__(self, input_size, hidden_size, output_size, *, cell, params=None,
                 **_):
        self.input_size, self.hidden_size, self.output_size = (
            input_size, hidden_size, output_size)
        self.cell = cell
        self.params = params


def _bptt_suffix(layer, direction):
    # DESIGN.md's names (bptt._bptt.suffix, a floor this module shares)
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if direction else "")


def _runs(num_layers, bidirectional):
    return [(layer, d) for layer in range(num_layers) for d in range(2 if bidirectional else 1)]


def to_torch_state_dict_layers(net, *, rnn_prefix="", output_prefix=""):
    """:func:`to_torch_state_dict` for any depth and direction: the keys of
    ``torch.nn.RNN/LSTM/GRU(num_layers, bidirectional)`` (``weight_ih_l1``,
    ``bias_hh_l0_reverse``, ...) and of the ``torch.nn.Linear``."""
    if net.num_layers == 1 and not net.bidirectional:
        return to_torch_state_dict(net, rnn_prefix=rnn_prefix, output_prefix=output_prefix)
    out = {}
    params = net.params
    base = [name for name in params if name not in ("W_oh", "b_o") and "_l" not in name
            and not name.endswith("_reverse")]
    for layer, d in _runs(net.num_layers, net.bidirectional):
        sfx = _bptt_suffix(layer, d)
        run_params = {name: params[name + sfx] for name in base}
        run_params["W_oh"], run_params["b_o"] = params["W_oh"], params["b_o"]
        run = _Run(run_params["W_xh"].shape[1], net.hidden_size, net.output_size,
                   cell=net.cell, params=run_params)
        sd = to_torch_state_dict(run, rnn_prefix=rnn_prefix, output_prefix=output_prefix)
        for key, value in sd.items():
            if key.startswith(rnn_prefix) and key.endswith("_l0"):
                out[key[:-3] + _torch_suffix(layer, d)] = value
            elif (layer, d) == (0, 0):
                out[key] = value
    return out


def from_torch_state_dict_layers(network_type, state_dict, *, cell=None,
                                 nonlinearity="tanh", output_activation="identity",
                                 dtype=None, backend="cython", rnn_prefix="",
                                 output_prefix=""):
    """:func:`from_torch_state_dict` for any depth and direction: the layers
    and directions are read from the keys (``_l{l}``, ``_reverse``)."""
    keys = _state_dict_keys(state_dict)
    pattern = re.compile(re.escape(rnn_prefix) + r"(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")
    found = [pattern.match(k) for k in keys if isinstance(k, str)]
    runs = {(int(m.group(3)), bool(m.group(4))) for m in found if m}
    if runs <= {(0, False)}:
        return from_torch_state_dict(
            network_type, state_dict, cell=cell, nonlinearity=nonlinearity,
            output_activation=output_activation, dtype=dtype, backend=backend,
            rnn_prefix=rnn_prefix, output_prefix=output_prefix)
    num_layers = max(layer for layer, _ in runs) + 1
    bidirectional = any(d for _, d in runs)
    expected = {(layer, bool(d)) for layer, d in _runs(num_layers, bidirectional)}
    if runs != expected:
        raise ValueError(
            f"state_dict has the layers and directions {sorted(runs)}; a network of "
            f"{num_layers} layer(s){' in both directions' if bidirectional else ''} "
            f"needs {sorted(expected)}."
        )
    used = {m.group(0) for m in found if m}
    out_keys = {f"{output_prefix}weight", f"{output_prefix}bias"}
    unexpected = sorted(set(keys) - used - out_keys)
    if unexpected:
        raise ValueError(f"unexpected keys in state_dict: {unexpected}.")
    if f"{output_prefix}weight" not in state_dict:
        raise ValueError(f"state_dict is missing the keys {[f'{output_prefix}weight']}.")
    missing = [f"{rnn_prefix}{kind}{_torch_suffix(layer, d)}"
               for layer, d in _runs(num_layers, bidirectional)
               for kind in ("weight_ih", "weight_hh")
               if f"{rnn_prefix}{kind}{_torch_suffix(layer, d)}" not in state_dict]
    if missing:
        raise ValueError(f"state_dict is missing the keys {missing}.")
    params = {}
    built = None
    for layer, d in _runs(num_layers, bidirectional):
        tsfx = _torch_suffix(layer, d)
        run_dict = {f"{rnn_prefix}{kind}_l0": state_dict[f"{rnn_prefix}{kind}{tsfx}"]
                    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    if f"{rnn_prefix}{kind}{tsfx}" in state_dict}
        H = np.shape(run_dict.get(f"{rnn_prefix}weight_hh_l0", np.empty((0, 0))))[-1]
        # a stand-in output layer of the run's width: the real one is (O, D*H)
        run_dict[f"{output_prefix}weight"] = np.zeros((1, H))
        run = from_torch_state_dict(_Run, run_dict, cell=cell, nonlinearity=nonlinearity,
                                    dtype=dtype, backend=backend, rnn_prefix=rnn_prefix,
                                    output_prefix=output_prefix)
        if built is None:
            built = run
        elif run.cell != built.cell or run.hidden_size != built.hidden_size:
            raise ValueError(
                f"state_dict's layer {layer}{' reverse' if d else ''} is a {run.cell} "
                f"of hidden_size {run.hidden_size}; layer 0 is a {built.cell} of "
                f"hidden_size {built.hidden_size}."
            )
        for name, value in run.params.items():
            if name not in ("W_oh", "b_o"):
                params[name + _bptt_suffix(layer, d)] = value
    weight = state_dict[f"{output_prefix}weight"]
    if hasattr(weight, "detach") and hasattr(weight, "cpu"):
        weight = weight.detach().cpu()
    params["W_oh"] = as_numeric_array(weight, f"state_dict[{output_prefix + 'weight'!r}]")
    O = params["W_oh"].shape[0] if params["W_oh"].ndim == 2 else 0
    bias = state_dict.get(f"{output_prefix}bias")
    if bias is not None and hasattr(bias, "detach") and hasattr(bias, "cpu"):
        bias = bias.detach().cpu()
    params["b_o"] = (np.zeros(O) if bias is None else
                     as_numeric_array(bias, f"state_dict[{output_prefix + 'bias'!r}]"))
    if dtype is None:
        w_hh = params["W_hh"]
        dtype = w_hh.dtype if w_hh.dtype in (np.float32, np.float64) else np.float64
    net = network_type(params["W_xh"].shape[1], built.hidden_size, max(O, 1),
                       cell=built.cell, nonlinearity=nonlinearity,
                       output_activation=output_activation, init="identity", dtype=dtype,
                       backend=backend, random_state=0, num_layers=num_layers,
                       bidirectional=bidirectional)
    net.params = params  # checks every shape (W_oh's included)
    return net
