"""``python -m bptt``: --version, and bad values are usage errors (status 2)."""

import subprocess
import sys

import pytest

import bptt
from bptt.__main__ import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "bptt", *args], capture_output=True,
                          text=True, timeout=120)


def test_version():
    out = _run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"bptt {bptt.__version__}"


def test_bad_epochs_is_a_usage_error_not_a_traceback():
    out = _run("demo", "--epochs", "0")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert "usage: bptt demo" in out.stderr
    assert "argument --epochs: must be an integer >= 1; got 0" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["--epochs", "-3"], "argument --epochs: must be an integer >= 1; got -3"),
    (["--epochs", "ten"], "argument --epochs: expected an integer; got 'ten'"),
    (["--epochs", "1.5"], "argument --epochs: expected an integer; got '1.5'"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]; got -1"),
    (["--seed", str(2**32)], "argument --seed: must be an integer in [0, 4294967295]"),
    (["--verbose", "-1"], "argument --verbose: must be an integer in [0, 2]; got -1"),
    (["--verbose", "3"], "argument --verbose: must be an integer in [0, 2]; got 3"),
    (["--blas-threads", "-2"], "argument --blas-threads: must be an integer >= 0; got -2"),
])
def test_bad_values_exit_with_status_2(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["demo", *args])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


@pytest.mark.parametrize("argv", [[], ["train"], ["demo", "--epocs", "3"]])
def test_missing_or_unknown_command_exits_with_status_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: bptt" in capsys.readouterr().err
