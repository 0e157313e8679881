"""The cell registry (``bptt._cells.CELLS``): every entry agrees with its
kernels, and what reads the registry (the network, the estimators'
constraints, persistence, PyTorch interop, the docs' tables) picks up a cell
registered later, or refuses one it cannot handle with a clear error."""

import importlib
import pathlib
import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

import bptt
from bptt._cells import CELLS, CellSpec, GRUCell, LSTMCell, register
from bptt._kernels import compiled_helpers
from helpers import CELLS as CELL_NAMES, TORCH_CELLS, make_state  # CELLS here is the registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKENDS = ["numpy"] + (["cython"] if compiled_helpers("elman") is not None else [])


def test_cell_names_are_the_registry():
    # bptt's own cells first; a new cell's entry adds to them
    assert CELL_NAMES[:3] == ("rnn", "lstm", "gru")
    assert {name: spec.name for name, spec in CELLS.items()} == {n: n for n in CELL_NAMES}


# ------------------------------------------------------- entries vs kernels
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_compiled_stepper_needs_what_the_entry_says(cell):
    spec = CELLS[cell]
    kernels = compiled_helpers(spec.kernel)
    if kernels is None:
        pytest.skip("the compiled kernels are not built")
    # src/_stepper.pxi's constants, which its Stepper checks its arguments by
    assert kernels.STEP_GATES == spec.n_gates
    assert kernels.STEP_STATES == len(spec.state)
    assert kernels.STEP_EXTRA == len(spec.extra_params)
    assert spec.stepper_params[5:] == tuple(spec.extra_params)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_kernel_modules_exist_under_the_entrys_names(cell, backend):
    spec = CELLS[cell]
    if backend == "cython" and "cython" not in BACKENDS:
        pytest.skip("the compiled kernels are not built")
    module = importlib.import_module(spec.module(backend))
    assert callable(getattr(module, f"{spec.kernel}_forward"))
    assert callable(getattr(module, f"{spec.kernel}_backward"))


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_entry_shapes_are_what_the_kernels_take(cell, backend):
    spec = CELLS[cell]
    I, H, O, n, T = 3, 5, 2, 4, 6
    net = bptt.RNN(I, H, O, cell=cell, backend=backend, random_state=0)
    shapes = spec.param_shapes(I, H, O)
    assert list(net.params) == list(spec.param_names) == list(shapes)
    assert {k: v.shape for k, v in net.params.items()} == shapes
    assert shapes["W_hh"] == (spec.n_gates * H, H)
    # the kernels run on arrays of those shapes, forward, backward and stepping
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T, I))
    h0 = make_state(rng, cell, n, H)
    Y, state = net.forward(X, h0=h0)
    assert len(spec.state_arrays(state)) == len(spec.state)
    loss, grads = net.loss_and_grad(X, rng.standard_normal((n, T, O)), h0=h0)
    assert np.isfinite(loss)
    assert {k: v.shape for k, v in grads.items()} == shapes
    stream = net.stream(n, h0=h0)
    for t in range(T):
        y = stream.step(X[:, t])
    np.testing.assert_allclose(y, Y[:, -1], rtol=1e-10, atol=1e-12)
    if backend == "cython":
        # and the kernels' own shape checks refuse one gate block more or less
        for G in (spec.n_gates - 1, spec.n_gates + 1):
            if G < 1:
                continue
            bad = {**net.params, "W_xh": np.zeros((G * H, I)),
                   "W_hh": np.zeros((G * H, H)), "b_h": np.zeros(G * H)}
            with pytest.raises(ValueError, match="W_hh must have shape"):
                net._cell.forward(np.zeros((T, n, I)), bad, net._check_state(None, n),
                                  net._cell.allocate(T, n, H, np.float64))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_initial_values_come_from_the_entry(cell):
    spec = CELLS[cell]
    H = 4
    net = bptt.RNN(2, H, 1, cell=cell, random_state=0)
    np.testing.assert_array_equal(net.params["b_h"], spec.initial_b_h(H))
    for name, (_, value) in spec.extra_params.items():
        np.testing.assert_array_equal(net.params[name], np.full(H, value))
    if cell == "lstm":  # the forget gate, rows H..2H
        np.testing.assert_array_equal(spec.initial_b_h(H), np.repeat([0, 1, 0, 0], H))


# ------------------------------------------------------------ registering
def _peephole_spec(**changes):
    """A stand-in for a second 4-gate cell: the LSTM's kernels under another
    name (a peephole LSTM would bring kernels of its own)."""
    fields = dict(name="lstm_twin", kernel="lstm", binding=LSTMCell,
                  gates=("i", "f", "g", "o"), state=("h", "c"), initial_bias={"f": 1.0},
                  torch_module="LSTM")
    fields.update(changes)
    return CellSpec(**fields)


@pytest.fixture
def registered():
    """register(spec) for the test, removed afterwards."""
    added = []

    def add(spec):
        added.append(register(spec).name)
        return spec

    yield add
    for name in added:
        CELLS.pop(name, None)


@pytest.mark.parametrize("changes, message", [
    (dict(name="lstm"), "taken"),
    (dict(gates=()), "gates"),
    (dict(gates=("i", "i")), "gates"),
    (dict(state=("c", "h")), "state"),
    (dict(initial_bias={"x": 1.0}), "initial_bias"),
    (dict(extra_params={"W_hh": (("H",), 0.0)}), "reuse"),
    (dict(extra_params={"w_peep": (("H", 3), 0.0)}), "PyTorch has no place"),
    (dict(torch_bias_apart={"g": "b_x"}), "torch_bias_apart"),
    (dict(binding=object), "binding"),
])
def test_register_refuses_an_inconsistent_entry(changes, message):
    with pytest.raises(ValueError, match=message):
        register(_peephole_spec(**changes))
    assert "lstm_twin" not in CELLS
    with pytest.raises(TypeError, match="CellSpec"):
        register({"name": "x"})


def test_a_cell_unknown_until_registered(registered):
    X, y = np.zeros((8, 5, 2)), np.zeros(8)
    with pytest.raises(ValueError, match="cell must be one of"):
        bptt.RNN(2, 3, 1, cell="lstm_twin")
    with pytest.raises(InvalidParameterError, match="cell"):
        bptt.RNNRegressor(cell="lstm_twin", max_epochs=1).fit(X, y)
    registered(_peephole_spec())
    assert "lstm_twin" in bptt.RNNRegressor._parameter_constraints["cell"][0].options


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_registered_cell_runs_everywhere(registered, backend):
    registered(_peephole_spec())
    rng = np.random.default_rng(1)
    twin = bptt.RNN(2, 3, 1, cell="lstm_twin", backend=backend, random_state=0)
    lstm = bptt.RNN(2, 3, 1, cell="lstm", backend=backend, random_state=0)
    for name in lstm.params:
        np.testing.assert_array_equal(twin.params[name], lstm.params[name])
    X = rng.standard_normal((4, 6, 2))
    h0 = make_state(rng, "lstm_twin", 4, 3)
    (Y1, s1), (Y2, s2) = twin.forward(X, h0=h0), lstm.forward(X, h0=h0)
    np.testing.assert_array_equal(Y1, Y2)
    assert isinstance(s1, tuple) and len(s1) == 2
    y = rng.standard_normal((4, 6))
    assert twin.loss_and_grad(X, y, h0=h0)[0] == lstm.loss_and_grad(X, y, h0=h0)[0]
    np.testing.assert_array_equal(twin.stream(4, h0=h0).step(X[:, 0]),
                                  lstm.stream(4, h0=h0).step(X[:, 0]))


def _fit_save_load(cell, path):
    """Fit a small regressor of ``cell``, save it to ``path`` and check that
    what loads predicts the same; the path written."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((16, 5, 2)), rng.standard_normal(16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = bptt.RNNRegressor(hidden_size=3, cell=cell, max_epochs=2,
                                random_state=0).fit(X, y)
    assert reg.net_.cell == cell
    path = reg.save(path)
    np.testing.assert_array_equal(bptt.load(path).predict(X), reg.predict(X))
    return path


def test_estimators_and_persistence_take_a_registered_cell(registered, tmp_path):
    registered(_peephole_spec())
    path = _fit_save_load("lstm_twin", tmp_path / "twin.npz")
    # a file of a cell this process does not know is refused, naming it
    CELLS.pop("lstm_twin")
    with pytest.raises(ValueError, match="not a valid bptt model file.*lstm_twin"):
        bptt.load(path)


class _ManyParamsGRU(GRUCell):
    """The GRU with 12 extra parameters that do not enter its maths: their
    gradients are zero (the GRU's kernels write only their own)."""

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, *args, **kwargs):
        if not accumulate:
            for k in range(12):
                grads[f"b_{k}"][...] = 0
        return super().backward(X, p, state0, cache, dH, dstate_next, truncate, grads,
                                accumulate, *args, **kwargs)


def test_persistence_counts_a_cells_extra_parameters(registered, tmp_path):
    # more parameters than bptt's own cells have still load
    extra = {f"b_{k}": (("H",), 0.0) for k in range(12)}
    spec = registered(CellSpec(name="gru_many", kernel="gru", binding=_ManyParamsGRU,
                               gates=("r", "z", "n"),
                               extra_params={"b_hn": (("H",), 0.0), **extra}))
    assert len(spec.param_names) + 2 > 16
    net = bptt.RNN(2, 3, 1, cell="gru_many", random_state=0)
    assert list(net.params) == list(spec.param_names)
    _fit_save_load("gru_many", tmp_path / "many.npz")
    # PyTorch has no GRU with these parameters
    with pytest.raises(ValueError, match="no PyTorch counterpart"):
        net.to_torch_state_dict()


def test_a_cell_without_kernels_is_refused_clearly(registered):
    registered(_peephole_spec(name="no_kernels", kernel="no_such_kernel"))
    with pytest.raises(ImportError, match="no_such_kernel"):
        bptt.RNN(2, 3, 1, cell="no_kernels", backend="numpy")


# ---------------------------------------------------------------- interop
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_interop_round_trip(cell):
    spec = CELLS[cell]
    net = bptt.RNN(3, 4, 2, cell=cell, random_state=0)
    rng = np.random.default_rng(4)
    net.params = {k: rng.standard_normal(v.shape) for k, v in net.params.items()}
    sd = net.to_torch_state_dict()
    H = 4
    # the folding: bias_ih holds b_h, bias_hh the blocks kept apart, else 0
    np.testing.assert_array_equal(sd["bias_ih_l0"], net.params["b_h"])
    for gate in spec.gates:
        rows = spec.gate_rows(gate, H)
        apart = spec.torch_bias_apart.get(gate)
        np.testing.assert_array_equal(
            sd["bias_hh_l0"][rows], net.params[apart] if apart else np.zeros(H))
    for given in (None, cell):  # inferred from the gate count, and named
        again = bptt.RNN.from_torch_state_dict(sd, cell=given)
        assert again.cell == cell
        for k in net.params:
            np.testing.assert_array_equal(again.params[k], net.params[k])


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_interop_matches_the_torch_module_the_entry_names(cell):
    torch = pytest.importorskip("torch")
    spec = CELLS[cell]
    I, H, O = 3, 4, 2
    module = getattr(torch.nn, spec.torch_module)(I, H, batch_first=True,
                                                  dtype=torch.float64)
    rng = np.random.default_rng(5)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
    sd = {k: v.numpy() for k, v in module.state_dict().items()}
    sd.update(weight=rng.standard_normal((O, H)), bias=np.zeros(O))
    net = bptt.RNN.from_torch_state_dict(sd)
    assert net.cell == cell
    X = rng.standard_normal((2, 5, I))
    with torch.no_grad():
        h = module(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(net.forward(X)[0], h @ sd["weight"].T, rtol=1e-10,
                               atol=1e-12)


def test_interop_asks_for_the_cell_when_gate_counts_tie(registered):
    net = bptt.RNN(3, 4, 2, cell="lstm", random_state=0)
    sd = net.to_torch_state_dict()
    registered(_peephole_spec())
    with pytest.raises(ValueError, match=r"lstm.*lstm_twin.*pass cell="):
        bptt.RNN.from_torch_state_dict(sd)
    for cell in ("lstm", "lstm_twin"):
        again = bptt.RNN.from_torch_state_dict(sd, cell=cell)
        assert again.cell == cell
        np.testing.assert_array_equal(again.params["W_hh"], net.params["W_hh"])
    # today's dicts of the other cells still need no cell=
    gru = bptt.RNN(3, 4, 2, cell="gru", random_state=0)
    assert bptt.RNN.from_torch_state_dict(gru.to_torch_state_dict()).cell == "gru"


def test_interop_refuses_a_cell_pytorch_lacks(registered):
    registered(_peephole_spec(name="lstm_own", torch_module=None))
    net = bptt.RNN(3, 4, 2, cell="lstm_own", backend="numpy", random_state=0)
    with pytest.raises(ValueError, match="cell='lstm_own' has no PyTorch counterpart"):
        net.to_torch_state_dict()
    sd = bptt.RNN(3, 4, 2, cell="lstm", random_state=0).to_torch_state_dict()
    with pytest.raises(ValueError, match="no PyTorch counterpart"):
        bptt.RNN.from_torch_state_dict(sd, cell="lstm_own")
    # and it is no candidate when the cell is inferred
    assert bptt.RNN.from_torch_state_dict(sd).cell == "lstm"


# ------------------------------------------------------------ docs tables
def _table_rows(text, header):
    """{first cell: [cells]} of the Markdown table whose header starts so."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip('`"')] = cells[1:]
    return rows


def _gate_prefix(spec):
    return "" if spec.n_gates == 1 else str(spec.n_gates)


@pytest.mark.parametrize("page", ["README.md", "docs/gated.md"])
def test_parameter_tables_match_the_registry(page):
    rows = _table_rows((ROOT / page).read_text(), "| cell | `W_xh` |")
    if page == "README.md":
        assert set(rows) == set(CELL_NAMES)
    for cell, columns in rows.items():
        spec = CELLS[cell]
        G = _gate_prefix(spec)
        assert columns[:3] == [f"({G}H, I)", f"({G}H, H)", f"({G}H,)"], cell
        rest = " ".join(columns[3:])
        for name in spec.extra_params:
            assert f"`{name}` (H,)" in rest, cell
        if spec.n_gates > 1:
            assert ", ".join(spec.gates) in rest, cell


def test_estimator_docs_refer_to_the_cells_table():
    """The estimators' ``cell`` row names no cell (a new one needs no edit
    there) but the README's table, which lists every cell."""
    rows = _table_rows((ROOT / "docs/estimators.md").read_text(), "| parameter |")
    assert re.findall(r'"(\w+)"', rows["cell"][1]) == []
    assert "README's parameter table" in rows["cell"][1]


def test_docstrings_list_every_cell():
    listed = "{" + ", ".join(f'"{name}"' for name in CELL_NAMES) + "}"
    assert f"cell : {listed}, default=" in bptt.RNN.__doc__
    assert f"cell : {listed} or None" in bptt.RNN.from_torch_state_dict.__doc__
    for estimator in (bptt.RNNRegressor, bptt.RNNClassifier):
        assert f"cell : {listed}, default=" in estimator.__doc__
