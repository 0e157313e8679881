"""``python -m bptt demo gradients`` (issue 17): the table, the figure, and
the note without matplotlib. Run in a subprocess with a tiny training budget;
the gradient-flow ratios before training are deterministic (seeded), the
training results are not asserted (they depend on the machine's speed)."""

import subprocess
import sys

import numpy as np
import pytest

from bptt import _gradient_demo

NAMES = ["tanh, small random W_hh", "ReLU, identity W_hh (IRNN)", "LSTM",
         "tanh, W_hh x3, no clipping", "tanh, W_hh x3, clip_norm=1"]


def _run(*args, code=None):
    argv = ([sys.executable, "-c", code] if code else [sys.executable, "-m", "bptt"])
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=600)


def _rows(stdout):
    """{network: [ratio, updates, mse]} from the printed Markdown table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in NAMES:
            rows[cells[0]] = cells[1:]
    return rows


def test_demo_prints_the_table_and_writes_the_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "flow.png"
    out = _run("demo", "gradients", "--seconds", "0.05", "--png", str(png))
    assert out.returncode == 0, out.stderr
    assert "adding problem, T=100" in out.stdout
    rows = _rows(out.stdout)
    assert list(rows) == NAMES
    ratio = {name: float(row[0]) for name, row in rows.items()}
    # before training: vanishing for tanh with small weights, kept by IRNN and
    # the LSTM, exploding with large weights (the same network twice)
    assert ratio[NAMES[0]] < 1e-10
    assert ratio[NAMES[1]] > 1e-2 and ratio[NAMES[2]] > 1e-4
    assert ratio[NAMES[0]] < 1e-6 * ratio[NAMES[2]]
    assert ratio[NAMES[3]] == ratio[NAMES[4]] > 1e6
    for name, (_, updates, mse) in rows.items():
        assert int(updates) >= 0
        assert mse == "diverged" or float(mse) >= 0
    assert f"figure written to {png}" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_without_matplotlib_prints_the_table_and_how_to_get_the_figure(tmp_path):
    png = tmp_path / "flow.png"
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from bptt.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    out = _run("demo", "gradients", "--seconds", "0.05", "--png", str(png), code=code)
    assert out.returncode == 0, out.stderr
    assert list(_rows(out.stdout)) == NAMES
    assert 'pip install "bptt[plot]"' in out.stdout
    assert not png.exists()


def test_bad_seconds_is_a_usage_error(capsys):
    from bptt.__main__ import main
    for value in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(SystemExit) as exc:
            main(["demo", "gradients", "--seconds", value])
        assert exc.value.code == 2
        assert "argument --seconds" in capsys.readouterr().err


def test_adding_problem():
    X, y = _gradient_demo.adding_problem(50, np.random.default_rng(0), steps=10)
    assert X.shape == (50, 10, 2) and y.shape == (50,)
    markers = X[:, :, 1]
    assert (markers.sum(axis=1) == 2).all()
    assert (markers[:, :5].sum(axis=1) == 1).all()  # one marker in each half
    np.testing.assert_allclose(y, (X[:, :, 0] * markers).sum(axis=1))
