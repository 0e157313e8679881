"""net.params: every way of writing into it validates, nothing removes a key.

The compiled kernels trust the weight shapes (issue 16, item 2): a wrong
shape that reached them wrote out of bounds. Params is a dict (the design
contract's ``dict[str, ndarray]``), so each of dict's mutators is covered.
"""

import copy
import pickle

import numpy as np
import pytest

import bptt
from helpers import CELLS


@pytest.fixture(params=CELLS)
def net(request):
    return bptt.RNN(3, 5, 2, cell=request.param, random_state=0)


def _snapshot(net):
    return {k: v.copy() for k, v in net.params.items()}


def _unchanged(net, before):
    assert set(net.params) == set(before)
    for k, v in before.items():
        assert net.params[k].shape == v.shape
        np.testing.assert_array_equal(net.params[k], v)


def _wrong_shape(net):
    return np.ones((50, 50))


WRITES = {
    "setitem": lambda p, v: p.__setitem__("W_hh", v),
    "ior": lambda p, v: p.__ior__({"W_hh": v}),
    "update_dict": lambda p, v: p.update({"W_hh": v}),
    "update_pairs": lambda p, v: p.update([("W_hh", v)]),
    "update_kwargs": lambda p, v: p.update(W_hh=v),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_checks_the_shape(net, write):
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"params\['W_hh'\] must have shape"):
        WRITES[write](net.params, _wrong_shape(net))
    _unchanged(net, before)


def test_in_place_or_operator_validates(net):
    # the one line; through a local name the property setter never runs
    before = _snapshot(net)
    with pytest.raises(ValueError, match="must have shape"):
        net.params |= {"W_hh": np.ones((50, 50))}
    _unchanged(net, before)
    p = net.params
    with pytest.raises(ValueError, match="must have shape"):
        p |= {"W_hh": np.ones((50, 50))}
    _unchanged(net, before)
    # and the network still runs on its own weights
    Y, _ = net.forward(np.zeros((2, 3, 3)))
    assert np.isfinite(Y).all()


@pytest.mark.parametrize("write", ["ior", "update_dict"])
def test_bulk_writes_validate_everything_before_storing_anything(net, write):
    before = _snapshot(net)
    good = np.full(net.params["W_xh"].shape, 0.5)
    bad = {"W_xh": good, "W_hh": np.ones((50, 50))}
    with pytest.raises(ValueError, match="W_hh"):
        if write == "ior":
            net.params |= bad
        else:
            net.params.update(bad)
    _unchanged(net, before)
    bad = {"W_xh": good, "b_h": np.full(net.params["b_h"].shape, np.nan)}
    with pytest.raises(ValueError, match="NaN"):
        net.params.update(bad)
    _unchanged(net, before)


def test_valid_bulk_writes_are_stored_as_copies(net):
    new = np.full(net.params["W_xh"].shape, 0.25, dtype=np.float32)
    params, w_hh = net.params, net.params["W_hh"]
    net.params |= {"W_xh": new}
    # the same mapping, and the arrays not written are the same arrays
    assert net.params is params and net.params["W_hh"] is w_hh
    assert net.params["W_xh"].dtype == net.dtype
    assert net.params["W_xh"] is not new
    np.testing.assert_array_equal(net.params["W_xh"], 0.25)
    net.params.update(b_o=[1.0, 2.0])
    np.testing.assert_array_equal(net.params["b_o"], [1.0, 2.0])
    assert net.params["b_o"].flags.c_contiguous


@pytest.mark.parametrize("action,exc", [
    (lambda p: p.pop("W_hh"), TypeError),
    (lambda p: p.pop("W_hh", None), TypeError),
    (lambda p: p.pop("nope", None), TypeError),
    (lambda p: p.popitem(), TypeError),
    (lambda p: p.clear(), TypeError),
    (lambda p: p.__delitem__("W_hh"), TypeError),
    (lambda p: p.setdefault("W_zz", np.ones(3)), TypeError),
    (lambda p: p.__setitem__("W_zz", np.ones(3)), KeyError),
    (lambda p: p.update({"W_zz": np.ones(3)}), KeyError),
    (lambda p: p.__init__({"W_hh": (50, 50)}, np.float64, {"W_hh": np.ones((50, 50))}),
     TypeError),
])
def test_keys_cannot_be_added_or_removed(net, action, exc):
    before = _snapshot(net)
    with pytest.raises(exc):
        action(net.params)
    _unchanged(net, before)


def test_setdefault_of_a_present_key_only_reads(net):
    # dict.setdefault of a present key returns its value and writes nothing
    before = _snapshot(net)
    assert net.params.setdefault("W_hh", np.ones((50, 50))) is net.params["W_hh"]
    _unchanged(net, before)
    with pytest.raises(TypeError, match="cannot be added"):
        net.params.setdefault("W_zz")


def test_params_stay_a_dict_that_copies_and_pickles(net):
    assert isinstance(net.params, dict)
    for other in (net.params.copy(), copy.copy(net.params), copy.deepcopy(net.params),
                  pickle.loads(pickle.dumps(net.params))):
        assert type(other) is type(net.params)
        assert set(other) == set(net.params)
        for k in net.params:
            np.testing.assert_array_equal(other[k], net.params[k])
            assert other[k] is not net.params[k]
        with pytest.raises(ValueError, match="must have shape"):
            other |= {"W_hh": np.ones((50, 50))}
    # a plain dict of the same arrays is what dict(...) and | give
    assert type(dict(net.params)) is dict
    merged = net.params | {"W_hh": np.ones((50, 50))}
    assert type(merged) is dict and net.params["W_hh"].shape != (50, 50)
