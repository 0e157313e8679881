"""Sequences without a timestep get one message, whatever the form of X."""

import re
import warnings

import numpy as np
import pytest

import bptt

MESSAGE = (r"Found array with 0 timestep\(s\) \(shape={shape}\) while a minimum of 1 "
           r"is required by {owner}: every sequence needs a timestep \(the second axis "
           r"of X is time\)\.$")


@pytest.mark.parametrize("est_cls", [bptt.RNNRegressor, bptt.RNNClassifier])
@pytest.mark.parametrize("shape", [(4, 0), (4, 0, 1), (4, 0, 3)])
@pytest.mark.parametrize("method", ["fit", "partial_fit", "predict"])
def test_estimators_say_zero_timesteps_for_2d_and_3d(est_cls, shape, method):
    y = np.array([0, 1, 0, 1])
    est = est_cls(hidden_size=2, max_epochs=1, random_state=0)
    pattern = MESSAGE.format(shape=re.escape(str(shape)), owner=est_cls.__name__)
    if method == "predict":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(np.zeros((4, 3, shape[2] if len(shape) == 3 else 1)), y)
        with pytest.raises(ValueError, match=pattern):
            est.predict(np.zeros(shape))
        return
    partial_classifier = method == "partial_fit" and est_cls is bptt.RNNClassifier
    kwargs = {"classes": [0, 1]} if partial_classifier else {}
    with pytest.raises(ValueError, match=pattern):
        getattr(est, method)(np.zeros(shape), y, **kwargs)


@pytest.mark.parametrize("method", ["forward", "loss_and_grad"])
def test_rnn_says_zero_timesteps(method):
    net = bptt.RNN(3, 2, 1, random_state=0)
    args = (np.zeros((4, 0, 1)),) if method == "loss_and_grad" else ()
    with pytest.raises(ValueError, match=MESSAGE.format(shape=re.escape("(4, 0, 3)"), owner="RNN")):
        getattr(net, method)(np.zeros((4, 0, 3)), *args)


def test_sklearn_empty_data_check_fails_only_on_its_feature_wording():
    # the xfail in test_estimators.py hides which assertion fails: zero
    # samples are rejected, and only the "0 feature(s)" wording for a (12, 0)
    # X, which is 12 series of no timestep here, differs
    from sklearn.utils.estimator_checks import check_estimators_empty_data_messages

    for est in (bptt.RNNRegressor(random_state=0), bptt.RNNClassifier(random_state=0)):
        with pytest.raises(AssertionError, match=r"Got Found array with 0 timestep\(s\) "
                                                  r"\(shape=\(12, 0\)\)"):
            check_estimators_empty_data_messages(type(est).__name__, est)
