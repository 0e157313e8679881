"""Every compiled entry point refuses arrays whose shapes or dtypes disagree.

The kernels index raw pointers without bounds checks, so each checks its
arguments first (src/_checks.pxd; issue 16, item 2). Here every array
argument of every Python-callable kernel function is given, in turn, a
dimension one larger and one smaller, an extra dimension, the other float
dtype, an integer dtype and a non-contiguous view, and the call must raise
(ValueError, or TypeError where Cython's fused-type dispatch refuses the
dtype) and not crash. The calls run in a worker process, so that a
regression that writes out of bounds fails the case it crashed on (and the
worker restarts after it) instead of killing pytest; under .ci/asan the
worker inherits the sanitizer, so an out-of-bounds access in a call that is
allowed to succeed is reported too.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

T, B, I, H, O = 3, 2, 3, 4, 2
GATES = {"elman": 1, "lstm": 4, "gru": 3}


def _kernels(name):
    from bptt.rnn import load_kernels
    return load_kernels("cython", name)


def _cell_args(cell, direction, dt, slabs):
    """Valid arguments (name -> value, in order) of a cell kernel."""
    rng = np.random.default_rng(0)
    G = GATES[cell] * H
    steps = T + 1 if slabs > 1 else 0  # cache timesteps per slab
    cached = (slabs - 1) * steps + T if slabs > 1 else T

    def arr(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(dt)

    a = {"X": arr(slabs * T, B, I), "W_xh": arr(G, I), "W_hh": arr(G, H)}
    if direction == "forward":
        a["b_h"] = arr(G)
        if cell == "gru":
            a["b_hn"] = arr(H)
        a["h0"] = arr(slabs * B, H)
        if cell == "elman":
            a["relu"] = False
            a["H"] = arr(cached, B, H)
        elif cell == "lstm":
            a.update(c0=arr(slabs * B, H), G=arr(cached, B, G), C=arr(cached, B, H),
                     H=arr(cached, B, H))
        else:
            a.update(G=arr(cached, B, G), HN=arr(cached, B, H), H=arr(cached, B, H),
                     Gh=arr(slabs * B, G))
    else:
        a["h0"] = arr(slabs * B, H)
        if cell == "elman":
            a.update(H=arr(cached, B, H), dH=arr(slabs * T, B, H), relu=False)
        elif cell == "lstm":
            a.update(c0=arr(slabs * B, H), G=arr(cached, B, G), C=arr(cached, B, H),
                     H=arr(cached, B, H), dH=arr(slabs * T, B, H))
        else:
            a.update(G=arr(cached, B, G), HN=arr(cached, B, H), H=arr(cached, B, H),
                     dH=arr(slabs * T, B, H))
        a.update(truncate=0, dW_xh=arr(G, I), dW_hh=arr(G, H), db_h=arr(G))
        if cell == "gru":
            a["db_hn"] = arr(H)
        a["dh0"] = arr(slabs * B, H)
        if cell == "lstm":
            a["dc0"] = arr(slabs * B, H)
        a.update(accumulate=False, dX=arr(slabs * T, B, I))
    a.update(n_threads=2, slabs=slabs, slab_steps=steps)
    return a


def _output_args(kind, dt):
    rng = np.random.default_rng(1)
    N = 4

    def arr(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(dt)

    if kind == "forward":
        return {"Hs": arr(N, H), "W_oh": arr(O, H), "b_o": arr(O), "activation": 2,
                "Z": arr(N, O), "Y": arr(N, O)}
    # "mse": plain rows; "labels": cross-entropy; "slabs": 2 parts of 2 rows
    # each from a longer cache (part_stride 3), as training's sequence chunks
    rows = 5 if kind == "slabs" else N
    target = (rng.integers(0, O, rows).astype(np.int64) if kind == "labels"
              else arr(rows, O))
    return {"Hs": arr(rows, H), "W_oh": arr(O, H), "b_o": arr(O), "activation": 2,
            "loss": 1 if kind == "labels" else 0, "target": target, "denominator": 8.0,
            "Z": arr(N, O), "Y": arr(N, O), "dZ": arr(N, O), "dW_oh": arr(O, H),
            "db_o": arr(O), "dHs": arr(N, H), "accumulate": False, "n_threads": 2,
            "parts": 2 if kind == "slabs" else 0, "part_stride": 3 if kind == "slabs" else 0}


def _optim_args(kind, dt):
    arrays = {"sgd": ("param", "grad", "new"),
              "momentum": ("param", "grad", "velocity", "new"),
              "adam": ("param", "grad", "m", "v", "new")}[kind]
    a = {name: np.full(5, 0.5, dtype=dt) for name in arrays}
    scalars = {"sgd": (0.1, 1.0), "momentum": (0.1, 0.9, 1.0),
               "adam": (0.1, 0.9, 0.999, 1e-8, 1.0)}[kind]
    a.update({f"s{i}": value for i, value in enumerate(scalars)})
    return a


# entry point -> (module, function, builder(dtype) -> args, arguments that
# set the sizes the others are checked against, {(argument, axis, +1 or -1):
# that change alone may be valid})
ENTRIES = {}
for _cell in GATES:
    for _direction in ("forward", "backward"):
        for _slabs in (1, 2):
            ENTRIES[f"{_cell}_{_direction}_slabs{_slabs}"] = (
                _cell, f"{_cell}_{_direction}",
                lambda dt, c=_cell, d=_direction, s=_slabs: _cell_args(c, d, dt, s),
                {"X", "W_hh", "h0", "H"},
                # the cache may hold more timesteps than the chunk
                ({("H", 0, 1)} if _cell == "elman" else set())
                | ({("X", 0, -1)} if _direction == "forward" and _slabs == 1 else set()))
for _kind in ("forward", "mse", "labels", "slabs"):
    ENTRIES[f"output_{_kind}"] = (
        "output", "output_forward" if _kind == "forward" else "output_layer",
        lambda dt, k=_kind: _output_args(k, dt), {"Hs", "W_oh", "dHs"},
        set() if _kind == "forward" else {("target", 0, 1), ("Hs", 0, 1)} if _kind == "slabs"
        else {("target", 0, 1)})
for _kind in ("sgd", "momentum", "adam"):
    ENTRIES[f"optim_{_kind}"] = ("optim", f"{_kind}_step",
                                 lambda dt, k=_kind: _optim_args(k, dt), {"param"}, set())
ENTRIES["inputs_all_finite"] = ("inputs", "all_finite",
                                lambda dt: {"x": np.zeros(5, dt)}, {"x"}, set())
ENTRIES["inputs_time_major"] = (
    "inputs", "time_major",
    lambda dt: {"X": np.zeros((4, 5, 3), dt), "start": 1, "stop": 4,
                "out": np.zeros((6, 2, 3), dt), "slabs": 2, "n_threads": 2},
    {"X"}, {("out", 0, 1), ("X", 1, 1), ("X", 1, -1)})
ENTRIES["vmath_apply"] = ("vmath", "apply",
                          lambda dt: {"name": "tanh", "x": np.zeros(5, dt),
                                      "out": np.zeros(5, dt)}, {"x"}, set())
ENTRIES["vmath_packed_product"] = (
    "vmath", "packed_product",
    lambda dt: {"A": np.ones((3, 4), dt), "W": np.ones((5, 4), dt), "transpose": True,
                "beta": 0.0, "C": np.zeros((3, 5), dt)}, {"A", "W"}, set())


def _variants(value, dt):
    """(label, wrong array, (axis, +1 or -1) or None) for one array."""
    other = np.float32 if dt == np.float64 else np.float64
    out = []
    for axis in range(value.ndim):
        for delta in (1, -1):
            shape = list(value.shape)
            shape[axis] += delta
            if shape[axis] < 1:
                continue
            out.append((f"axis{axis}{delta:+d}", np.zeros(shape, value.dtype),
                        (axis, delta)))
    out.append(("extra_dim", np.zeros(value.shape + (1,), value.dtype), None))
    if value.dtype.kind == "f":
        out.append(("other_float", value.astype(other), None))
    out.append(("int_dtype", value.astype(np.int32), None))
    wide = np.zeros(value.shape[:-1] + (2 * value.shape[-1],), value.dtype)
    out.append(("strided", wide[..., ::2], None))
    out.append(("none", None, None))
    return out


def _cases():
    """Every case id: entry/dtype/argument/variant (and the valid calls)."""
    ids = []
    for entry, (_, _, build, _, _) in ENTRIES.items():
        for dt in ("float64", "float32"):
            args = build(np.dtype(dt))
            ids.append(f"{entry}/{dt}/-/valid")
            for name, value in args.items():
                if isinstance(value, np.ndarray):
                    ids.extend(f"{entry}/{dt}/{name}/{label}"
                               for label, _, _ in _variants(value, np.dtype(dt)))
    for cell in GATES:
        for dt in ("float64", "float32"):
            ids.extend(f"stepper_{cell}/{dt}/{what}" for what in _STEPPER_CASES)
    return ids


def _stepper_problem(cell, dt):
    rng = np.random.default_rng(2)
    G = GATES[cell] * H
    params = [rng.standard_normal(s).astype(dt) for s in ((G, I), (G, H), (G,), (O, H), (O,))]
    if cell == "gru":
        params.append(np.zeros(H, dt))
    state = [np.zeros((B, H), dt)] * (2 if cell == "lstm" else 1)
    return params, state


_STEPPER_CASES = (["valid"] + [f"param{i}_{how}" for i in range(6)
                               for how in ("larger", "smaller", "extra_dim")]
                  + ["too_few_params", "too_many_params", "state_larger", "state_smaller",
                     "too_few_states", "float16", "activation", "reset_larger",
                     "reset_broadcast", "step_larger"])


def _run_stepper_case(cell, dt, what):
    k = _kernels(cell)
    params, state = _stepper_problem(cell, np.dtype(dt))
    if what.startswith("param"):
        i, how = int(what[5]), what[7:]
        if i >= len(params):
            return "skip"
        p = params[i]
        params[i] = (np.zeros(p.shape[:-1] + (p.shape[-1] + 1,), p.dtype) if how == "larger"
                     else np.zeros(p.shape[:-1] + (p.shape[-1] - 1,), p.dtype)
                     if how == "smaller" else p[..., None])
    elif what == "too_few_params":
        params = params[:-1]
    elif what == "too_many_params":
        params = params + [np.zeros(H, dt)]
    elif what == "state_larger":
        state = [np.zeros((B, H + 1), dt)] + state[1:]
    elif what == "state_smaller":
        state = state[:-1] + [np.zeros((B, H - 1), dt)]
    elif what == "too_few_states":
        state = state[:-1] if len(state) > 1 else []
    elif what == "float16":
        params = [p.astype(np.float16) for p in params]
    activation = 7 if what == "activation" else 0
    from bptt._validation import coerce_step_input

    stepper = k.Stepper(tuple(params), tuple(state), False, activation, coerce_step_input)
    if what.startswith("reset"):
        h = (np.zeros((B + 1, H), dt) if what == "reset_larger" else np.zeros((1, H), dt))
        stepper.reset(h if cell != "lstm" else (h, h))
    x = np.zeros((B, I + (1 if what == "step_larger" else 0)), dt)
    stepper.step(x)
    return "ok"


def _run_case(case):
    entry, dt, *rest = case.split("/")
    if entry.startswith("stepper_"):
        return _run_stepper_case(entry[8:], dt, rest[0])
    name, label = rest
    module, function, build, _, _ = ENTRIES[entry]
    args = build(np.dtype(dt))
    if name != "-":
        wrong = {lab: v for lab, v, _ in _variants(args[name], np.dtype(dt))}
        args[name] = wrong[label]
    getattr(_kernels(module), function)(*args.values())
    return "ok"


def _worker(cases):
    """Run cases in this process, one JSON line each, flushed before the next."""
    for case in cases:
        try:
            result = {"case": case, "outcome": _run_case(case)}
        except Exception as exc:  # reported, judged by the test
            result = {"case": case, "outcome": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)


@pytest.fixture(scope="module")
def outcomes():
    """case -> outcome dict, from worker processes; a case during which the
    worker died gets outcome "crash" and the rest run in a new worker."""
    todo = _cases()
    results = {}
    here = os.path.dirname(os.path.abspath(__file__))
    stalled = 0
    while todo:
        proc = subprocess.run(
            [sys.executable, "-c",
             "import sys, json; sys.path.insert(0, sys.argv[1]); "
             "import test_kernel_checks as t; t._worker(json.loads(sys.stdin.read()))",
             here],
            input=json.dumps(todo), capture_output=True, text=True, timeout=600)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                results[record["case"]] = record
        done = [case for case in todo if case in results]
        todo = todo[len(done):]
        stalled = 0 if done else stalled + 1
        # a worker that dies before its first case three times will not do better
        for case in todo[:1] if stalled < 3 else todo:
            results[case] = {"case": case, "outcome": "crash",
                             "message": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
        todo = todo[1:] if stalled < 3 else []
    return results


def _expectation(case):
    """"ok", "error" (ValueError, or TypeError for None and integer dtypes),
    "ok_or_error" (a larger first dimension some arguments may have), "skip"."""
    entry, dt, *rest = case.split("/")
    if entry.startswith("stepper_"):
        return "ok" if rest[0] == "valid" else "error"
    name, label = rest
    if label == "valid" or (name == "dX" and label == "none"):
        return "ok"  # dX is optional
    if entry == "inputs_all_finite" and (label.startswith("axis") or label == "other_float"):
        return "ok"  # any 1-D float array
    _, _, build, _, may_be_valid = ENTRIES[entry]
    value = build(np.dtype(dt))[name]
    change = dict((lab, ch) for lab, _, ch in _variants(value, np.dtype(dt)))[label]
    if change is not None and (name, *change) in may_be_valid:
        return "ok_or_error"
    return "error"


@pytest.mark.parametrize("entry", sorted({c.split("/")[0] for c in _cases()}))
def test_entry_point_refuses_mismatched_arrays(outcomes, entry):
    failures = []
    for case in (c for c in _cases() if c.split("/")[0] == entry):
        got = outcomes[case]
        outcome, message = got["outcome"], got.get("message", "")
        expected = _expectation(case)
        label = case.rsplit("/", 1)[1]
        name = case.split("/")[2]
        if outcome == "skip":
            continue
        if outcome == "crash":
            failures.append(f"{case}: the process died: {message}")
        elif expected == "ok" and outcome != "ok":
            failures.append(f"{case}: valid call raised {outcome}: {message}")
        elif expected == "error":
            allowed = ("ValueError",) + (("TypeError",) if label in (
                "none", "int_dtype", "extra_dim", "other_float") else ())
            if outcome not in allowed:
                failures.append(f"{case}: expected {'/'.join(allowed)}, got {outcome} "
                                f"{message}")
            elif (label.startswith("axis") and name not in ENTRIES[entry][3]
                  and name not in message):
                # a wrong size of an array checked against the others: named
                failures.append(f"{case}: the message does not name {name}: {message}")
        elif expected == "ok_or_error" and outcome not in ("ok", "ValueError"):
            failures.append(f"{case}: got {outcome} {message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("entry,case,needle", [
    ("elman_forward_slabs1", "W_xh/axis1+1", "W_xh must have shape (4, 3); got shape (4, 4)"),
    ("lstm_backward_slabs1", "dc0/axis0+1", "dc0 must have shape (2, 4); got shape (3, 4)"),
    ("gru_forward_slabs1", "b_hn/axis0-1", "b_hn must have shape (4,); got shape (3,)"),
    ("output_mse", "dW_oh/axis1+1", "dW_oh must have shape (2, 4); got shape (2, 5)"),
    ("output_labels", "target/axis0-1", "target (labels) must have shape (4,)"),
    ("optim_adam", "v/axis0-1", "v must have shape (5,); got shape (4,)"),
])
def test_messages_name_the_argument_and_shapes(outcomes, entry, case, needle):
    got = outcomes[f"{entry}/float64/{case}"]
    assert got["outcome"] == "ValueError"
    assert needle in got["message"]


def test_labels_out_of_range_are_refused():
    out = _kernels("output")
    args = _output_args("labels", np.dtype(np.float64))
    for bad in (-1, O):
        args["target"] = np.array([0, 1, bad, 0], dtype=np.int64)
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
            out.output_layer(*args.values())
    for code, name in ((3, "loss"), (-1, "activation")):
        args = _output_args("mse", np.dtype(np.float64))
        args[name] = code
        with pytest.raises(ValueError, match=f"{name} must be a code"):
            out.output_layer(*args.values())
