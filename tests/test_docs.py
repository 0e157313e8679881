"""Every Python example in docs/*.md runs as written, on its own: a reader
who copies one into a fresh interpreter gets no NameError (each example
imports what it uses)."""

import pathlib
import re
import warnings

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
EXAMPLES = [(path, i, code) for path in sorted(DOCS.glob("*.md"))
            for i, code in enumerate(re.findall(r"```python\n(.*?)```",
                                                path.read_text(), re.S))]


@pytest.mark.parametrize("path,index,code", EXAMPLES,
                         ids=[f"{p.name}-{i}" for p, i, _ in EXAMPLES])
def test_example_runs_on_its_own(path, index, code):
    if re.search(r"^import torch|^from torch", code, re.M):
        pytest.importorskip("torch")
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exec(compile(code, f"{path.name} example {index}", "exec"), {"__name__": "__doc__"})


def test_examples_were_found():
    assert len(EXAMPLES) >= 3
