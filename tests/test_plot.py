"""bptt.plot (issue 17): the data each function draws, with the Agg backend.

Checked through the Axes (lines' x and y data, labels, scales), never
pixels. Skipped without matplotlib, except the tests that bptt works
without it and says how to get it.
"""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import bptt
import bptt.plot


def _mpl():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


@pytest.fixture
def plt():
    plt = _mpl()
    yield plt
    plt.close("all")


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


# ------------------------------------------------------------ without matplotlib

def test_import_bptt_never_imports_matplotlib():
    code = ("import sys, bptt, bptt.plot, bptt.__main__\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    # None in sys.modules makes ``import matplotlib`` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    est = SimpleNamespace(loss_curve_=[1.0, 0.5])
    for call in (lambda: bptt.plot.plot_loss_curve(est),
                 lambda: bptt.plot.plot_gradient_flow(np.ones(3))):
        with pytest.raises(ImportError, match=r'pip install "bptt\[plot\]"'):
            call()


# ------------------------------------------------------------ loss curve

@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_loss_curve_of_a_fitted_estimator(plt):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6, 2)), rng.normal(size=40)
    est = bptt.RNNRegressor(hidden_size=4, max_epochs=5, random_state=0).fit(X, y)
    ax = bptt.plot.plot_loss_curve(est)
    lines = _lines(ax)
    train = lines["training loss"]
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 6))
    np.testing.assert_allclose(train.get_ydata(), est.loss_curve_)
    if getattr(est, "validation_loss_curve_", None) is None:
        assert "validation loss" not in lines
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"


def test_loss_curve_with_validation_on_given_axes(plt):
    est = SimpleNamespace(loss_curve_=[3.0, 2.0, 1.5], validation_loss_curve_=[3.5, 2.5, 2.4])
    fig, ax = plt.subplots()
    assert bptt.plot.plot_loss_curve(est, ax=ax) is ax
    lines = _lines(ax)
    np.testing.assert_allclose(lines["validation loss"].get_ydata(), [3.5, 2.5, 2.4])
    np.testing.assert_allclose(lines["validation loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines["training loss"].get_ydata(), [3.0, 2.0, 1.5])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training loss", "validation loss"]


def test_unfitted_estimator_is_a_not_fitted_error(plt):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="loss_curve_"):
        bptt.plot.plot_loss_curve(bptt.RNNRegressor())
    with pytest.raises(NotFittedError, match="grad_norm_curve_"):
        bptt.plot.plot_gradient_history(bptt.RNNRegressor())


# ------------------------------------------------------------ gradient history

def _history(**extra):
    return SimpleNamespace(
        grad_norm_curve_=[2.0, 1.0, 0.5], grad_norm_max_curve_=[9.0, 4.0, 1.5],
        clipped_fraction_curve_=np.array([0.75, 0.25, 0.0]),
        learning_rate_curve_=np.array([0.01, 0.01, 0.01]), clip_norm=1.0, **extra)


def test_gradient_history(plt):
    ax = bptt.plot.plot_gradient_history(_history())
    lines = _lines(ax)
    np.testing.assert_allclose(lines["gradient norm, median"].get_ydata(), [2.0, 1.0, 0.5])
    np.testing.assert_allclose(lines["gradient norm, max"].get_ydata(), [9.0, 4.0, 1.5])
    np.testing.assert_allclose(lines["gradient norm, max"].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines["clip_norm"].get_ydata(), [1.0, 1.0])
    assert ax.get_yscale() == "log"
    right = _lines(ax.right_ax)
    np.testing.assert_allclose(right["fraction clipped"].get_ydata(), [0.75, 0.25, 0.0])
    assert ax.right_ax.get_ylim() == (0, 1.05)
    # a constant learning rate is not drawn; a schedule is, relative to its start
    assert not any(k.startswith("learning rate") for k in right)
    est = _history()
    est.learning_rate_curve_ = np.array([0.01, 0.005, 0.0025])
    right = _lines(bptt.plot.plot_gradient_history(est).right_ax)
    np.testing.assert_allclose(right["learning rate / 0.01"].get_ydata(), [1, 0.5, 0.25])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "fraction clipped" in legend and "clip_norm" in legend


def test_gradient_history_without_clipping(plt):
    est = _history()
    est.clip_norm = None
    assert "clip_norm" not in _lines(bptt.plot.plot_gradient_history(est))


def test_gradient_history_checks_the_norm_curves(plt):
    est = _history()
    est.grad_norm_max_curve_ = [1.0, 2.0]
    with pytest.raises(ValueError, match=r"same length \(n_epochs,\)"):
        bptt.plot.plot_gradient_history(est)
    est = _history()
    est.grad_norm_curve_ = np.ones((3, 2))
    with pytest.raises(ValueError, match="one value per epoch"):
        bptt.plot.plot_gradient_history(est)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gradient_history_of_a_fitted_estimator(plt):
    """The real attributes of a fitted estimator, clipped and scheduled."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 12, 1)), rng.normal(size=40)
    est = bptt.RNNRegressor(hidden_size=8, max_epochs=4, batch_size=10, clip_norm=0.05,
                            learning_rate_schedule="cosine", random_state=0)
    est.fit(X, y)
    ax = bptt.plot.plot_gradient_history(est)
    lines = _lines(ax)
    epochs = np.arange(1, est.n_iter_ + 1)
    np.testing.assert_allclose(lines["gradient norm, median"].get_xdata(), epochs)
    np.testing.assert_allclose(lines["gradient norm, median"].get_ydata(),
                               est.grad_norm_curve_)
    np.testing.assert_allclose(lines["gradient norm, max"].get_ydata(),
                               est.grad_norm_max_curve_)
    assert (np.asarray(est.grad_norm_max_curve_) >= est.grad_norm_curve_).all()
    np.testing.assert_allclose(lines["clip_norm"].get_ydata(), [0.05, 0.05])
    right = _lines(ax.right_ax)
    np.testing.assert_allclose(right["fraction clipped"].get_ydata(),
                               est.clipped_fraction_curve_)
    rates = np.asarray(est.learning_rate_curve_)
    assert np.ptp(rates) > 0  # the cosine schedule moved it
    np.testing.assert_allclose(right[f"learning rate / {rates[0]:.3g}"].get_ydata(),
                               rates / rates[0])


# ------------------------------------------------------------ gradient flow

def _flows():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 30, 1)), rng.normal(size=5)
    flows = {}
    for cell in ("rnn", "lstm"):
        net = bptt.RNN(1, 6, 1, cell=cell, random_state=0)
        flows[cell] = net.loss_and_grad(X, y, output="last", return_state_grads=True)[2]
    return flows


def test_gradient_flow_of_several_networks(plt):
    flows = _flows()
    ax = bptt.plot.plot_gradient_flow(flows)
    lines = _lines(ax)
    assert sorted(lines) == ["lstm", "rnn"]
    for cell, flow in flows.items():
        np.testing.assert_array_equal(lines[cell].get_xdata(), np.arange(30))
        # x = steps back from the last timestep: reversed time
        np.testing.assert_allclose(lines[cell].get_ydata(), flow["dh_norm"][::-1])
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "steps back from the last timestep"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rnn", "lstm"]


def test_gradient_flow_forms_and_options(plt):
    flows = _flows()
    lstm = flows["lstm"]
    # one dict, no label, no legend; relative starts at 1
    ax = bptt.plot.plot_gradient_flow(lstm, relative=True)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(),
                               lstm["dh_norm"][::-1] / lstm["dh_norm"][-1])
    assert line.get_ydata()[0] == 1 and ax.get_legend() is None
    # the cell state, from a list; the raw (n, T, H) array; the (T,) norms
    ax = bptt.plot.plot_gradient_flow([lstm, lstm["dc"], lstm["dc_norm"]], state="c")
    lines = _lines(ax)
    for label in ("0", "1", "2"):
        np.testing.assert_allclose(lines[label].get_ydata(), lstm["dc_norm"][::-1],
                                   rtol=1e-12)
    assert "dL/dc_t" in ax.get_ylabel()
    fig, given = plt.subplots()
    assert bptt.plot.plot_gradient_flow(lstm, ax=given) is given


def test_gradient_flow_bad_input(plt):
    flows = _flows()
    with pytest.raises(ValueError, match="'dc_norm'"):
        bptt.plot.plot_gradient_flow(flows["rnn"], state="c")
    with pytest.raises(ValueError, match="state must be"):
        bptt.plot.plot_gradient_flow(flows["rnn"], state="x")
    with pytest.raises(ValueError, match=r"got an array of shape \(2, 3, 4, 5, 6\)"):
        bptt.plot.plot_gradient_flow(np.ones((2, 3, 4, 5, 6)))
    with pytest.raises(ValueError, match="empty"):
        bptt.plot.plot_gradient_flow([])
    with pytest.raises(ValueError, match="non-zero gradient at the last"):
        bptt.plot.plot_gradient_flow(np.array([1.0, 0.0]), relative=True)


# ------------------------------------------- layers and directions

def _layered_flow(cell="rnn", layers=2, bidirectional=True, lengths=None):
    rng = np.random.default_rng(1)
    net = bptt.RNN(1, 5, 1, cell=cell, num_layers=layers, bidirectional=bidirectional,
                   random_state=0)
    if lengths is None:
        X = rng.normal(size=(4, 12, 1))
    else:
        X = [rng.normal(size=(L, 1)) for L in lengths]
    y = rng.normal(size=(len(X), 1))
    return net.loss_and_grad(X, y, output="last", return_state_grads=True)[2]


def test_gradient_flow_of_a_stacked_bidirectional_network(plt):
    """(num_layers*2, T) norms: one line per layer and direction, labelled
    as the parameters are named; a reverse direction counts its steps back
    from the first timestep, the last it reads."""
    flow = _layered_flow()
    assert flow["dh_norm"].shape == (4, 12)
    ax = bptt.plot.plot_gradient_flow(flow, bidirectional=True)
    lines = _lines(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "layer 0", "layer 0 reverse", "layer 1", "layer 1 reverse"]
    norms = flow["dh_norm"]
    for r, label in enumerate(["layer 0", "layer 0 reverse", "layer 1", "layer 1 reverse"]):
        np.testing.assert_array_equal(lines[label].get_xdata(), np.arange(12))
        expected = norms[r] if r % 2 else norms[r][::-1]
        np.testing.assert_allclose(lines[label].get_ydata(), expected)
    # the raw (num_layers*2, n, T, H) gradients give the same lines
    ax = bptt.plot.plot_gradient_flow(flow["dh"], bidirectional=True)
    for label, line in _lines(ax).items():
        np.testing.assert_allclose(line.get_ydata(), lines[label].get_ydata(), rtol=1e-6)
    # relative: every run starts at 1 at its own last step
    ax = bptt.plot.plot_gradient_flow(flow["dh_norm"], relative=True, bidirectional=True)
    for r, line in enumerate(ax.get_lines()):
        assert line.get_ydata()[0] == 1
        last = norms[r][0] if r % 2 else norms[r][-1]
        np.testing.assert_allclose(line.get_ydata() * last, lines[line.get_label()].get_ydata())


def test_gradient_flow_of_stacked_networks_and_one_layer(plt):
    """Several networks, one stacked: "name, layer l" lines beside a plain
    one; a stacked unidirectional flow's rows are layers; an LSTM's cell
    states likewise; ragged input (lists) through the dict's norms."""
    stacked = _layered_flow("lstm", layers=3, bidirectional=False, lengths=[9, 5, 12])
    one = _flows()["rnn"]
    ax = bptt.plot.plot_gradient_flow({"deep": stacked, "rnn": one})
    lines = _lines(ax)
    assert sorted(lines) == ["deep, layer 0", "deep, layer 1", "deep, layer 2", "rnn"]
    for layer in range(3):
        np.testing.assert_allclose(lines[f"deep, layer {layer}"].get_ydata(),
                                   stacked["dh_norm"][layer][::-1])
    np.testing.assert_allclose(lines["rnn"].get_ydata(), one["dh_norm"][::-1])
    ax = bptt.plot.plot_gradient_flow(stacked, state="c")
    np.testing.assert_allclose(_lines(ax)["layer 2"].get_ydata(), stacked["dc_norm"][2][::-1])
    # one row of a layered flow alone: a single unlabelled line
    ax = bptt.plot.plot_gradient_flow(stacked["dh_norm"][1])
    assert ax.get_legend() is None and len(ax.get_lines()) == 1


def test_gradient_flow_of_padded_gradients_leaves_the_padding_out(plt):
    """A NaN-padded (num_layers*D, n, T, H) array: each timestep's mean runs
    over the sequences that reach it, as dh_norm does."""
    rng = np.random.default_rng(2)
    lengths = [9, 5, 12]
    X = np.full((3, 12, 1), np.nan)
    for i, L in enumerate(lengths):
        X[i, :L] = rng.normal(size=(L, 1))
    net = bptt.RNN(1, 5, 1, num_layers=2, random_state=0)
    flow = net.loss_and_grad(X, rng.normal(size=(3, 1)), output="last",
                             return_state_grads=True)[2]
    assert np.isnan(flow["dh"]).any()
    ax = bptt.plot.plot_gradient_flow(flow["dh"])
    for layer, line in enumerate(ax.get_lines()):
        np.testing.assert_allclose(line.get_ydata(), flow["dh_norm"][layer][::-1],
                                   rtol=1e-10)


def test_gradient_flow_layered_bad_input(plt):
    flow = _layered_flow(layers=1, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional=True needs a bidirectional"):
        bptt.plot.plot_gradient_flow(_flows()["rnn"], bidirectional=True)
    with pytest.raises(ValueError, match="an even number of rows; the flow has 3"):
        bptt.plot.plot_gradient_flow(np.ones((3, 5)), bidirectional=True)
    with pytest.raises(TypeError, match="bidirectional must be True or False"):
        bptt.plot.plot_gradient_flow(flow, bidirectional="yes")
    with pytest.raises(ValueError, match=r"must have shape \(T,\) or \(num_layers\*D, T\)"):
        bptt.plot.plot_gradient_flow({"dh_norm": np.ones((2, 3, 4))})
    with pytest.raises(ValueError, match=r"got an array of shape \(1, 2, 3, 4, 5\)"):
        bptt.plot.plot_gradient_flow(np.ones((1, 2, 3, 4, 5)))
