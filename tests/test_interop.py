"""The PyTorch state-dict exchange (python/bptt/interop.py) without PyTorch:
names, shapes, bias folding, prefixes and errors. test_torch_interop.py
checks the same exchange against PyTorch itself."""

import numpy as np
import pytest

import bptt
from helpers import GATES, TORCH_CELLS, make_net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_state_dict_round_trip_is_exact(cell, dtype):
    net = make_net(cell, 3, 4, 2, dtype=dtype, act="sigmoid")
    sd = net.to_torch_state_dict()
    G = GATES[cell]
    assert {k: v.shape for k, v in sd.items()} == {
        "weight_ih_l0": (G * 4, 3), "weight_hh_l0": (G * 4, 4),
        "bias_ih_l0": (G * 4,), "bias_hh_l0": (G * 4,), "weight": (2, 4), "bias": (2,)}
    assert all(v.dtype == np.dtype(dtype) for v in sd.values())
    back = bptt.RNN.from_torch_state_dict(sd, output_activation="sigmoid")
    assert back.cell == cell and np.dtype(back.dtype) == np.dtype(dtype)
    assert sorted(back.params) == sorted(net.params)
    for k in net.params:
        np.testing.assert_array_equal(back.params[k], net.params[k])
    # the returned arrays are copies
    sd["weight_hh_l0"][...] = 0
    assert np.any(net.params["W_hh"] != 0)


def test_state_dict_folds_biases():
    rng = np.random.default_rng(11)
    H = 3
    for cell, G in (("lstm", 4), ("gru", 3), ("rnn", 1)):
        sd = {"weight_ih_l0": rng.normal(size=(G * H, 2)),
              "weight_hh_l0": rng.normal(size=(G * H, H)),
              "bias_ih_l0": rng.normal(size=G * H), "bias_hh_l0": rng.normal(size=G * H),
              "weight": rng.normal(size=(1, H)), "bias": rng.normal(size=1)}
        net = bptt.RNN.from_torch_state_dict(sd, backend="numpy")
        assert net.cell == cell
        if cell == "gru":
            np.testing.assert_array_equal(
                net.params["b_h"][:2 * H], sd["bias_ih_l0"][:2 * H] + sd["bias_hh_l0"][:2 * H])
            np.testing.assert_array_equal(net.params["b_h"][2 * H:], sd["bias_ih_l0"][2 * H:])
            np.testing.assert_array_equal(net.params["b_hn"], sd["bias_hh_l0"][2 * H:])
            out = net.to_torch_state_dict()
            np.testing.assert_array_equal(out["bias_hh_l0"][:2 * H], 0)
            np.testing.assert_array_equal(out["bias_hh_l0"][2 * H:], sd["bias_hh_l0"][2 * H:])
        else:
            np.testing.assert_array_equal(net.params["b_h"], sd["bias_ih_l0"] + sd["bias_hh_l0"])
            np.testing.assert_array_equal(net.to_torch_state_dict()["bias_hh_l0"], 0)


def test_state_dict_prefixes_and_missing_biases():
    rng = np.random.default_rng(12)
    sd = {"rnn.weight_ih_l0": rng.normal(size=(12, 2)),
          "rnn.weight_hh_l0": rng.normal(size=(12, 3)),
          "fc.weight": rng.normal(size=(2, 3))}
    net = bptt.RNN.from_torch_state_dict(sd, rnn_prefix="rnn.", output_prefix="fc.",
                                         dtype="float32")
    assert net.cell == "lstm" and net.dtype == np.float32
    np.testing.assert_array_equal(net.params["b_h"], 0)
    np.testing.assert_array_equal(net.params["b_o"], 0)
    out = net.to_torch_state_dict(rnn_prefix="rnn.", output_prefix="fc.")
    assert sorted(out) == sorted(list(sd) + ["rnn.bias_ih_l0", "rnn.bias_hh_l0", "fc.bias"])


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.pop("weight_hh_l0"), "missing the keys"),
    (lambda sd: sd.update(weight_ih_l1=sd["weight_ih_l0"]), r"missing the keys \['weight_hh_l1'\]"),
    (lambda sd: sd.update(weight_ih=sd["weight_ih_l0"]), "unexpected keys"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((10, 3))), "weight_hh_l0"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((6, 3))), "G = 1"),
    (lambda sd: sd.update(weight_ih_l0=np.zeros((9, 2))), "weight_ih_l0"),
    (lambda sd: sd.update(bias_hh_l0=np.zeros(11)), "bias_hh_l0"),
    (lambda sd: sd.update(weight=np.zeros((1, 4))), "'weight'"),
    (lambda sd: sd.update(bias=np.zeros(2)), "'bias'"),
    (lambda sd: sd.update(bias=np.array([np.nan])), "NaN"),
])
def test_state_dict_errors(change, message):
    sd = bptt.RNN(2, 3, 1, cell="lstm").to_torch_state_dict()
    change(sd)
    with pytest.raises(ValueError, match=message):
        bptt.RNN.from_torch_state_dict(sd)


def test_state_dict_cell_must_match_shapes():
    sd = bptt.RNN(2, 3, 1, cell="gru").to_torch_state_dict()
    with pytest.raises(ValueError, match="cell='lstm'"):
        bptt.RNN.from_torch_state_dict(sd, cell="lstm")
    with pytest.raises(TypeError, match="mapping"):
        bptt.RNN.from_torch_state_dict([1, 2])


def test_library_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, numpy as np, bptt\n"
            "net = bptt.RNN(2, 3, 1, cell='gru')\n"
            "bptt.RNN.from_torch_state_dict(net.to_torch_state_dict())\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
