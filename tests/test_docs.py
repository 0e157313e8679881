"""Every Python example in docs/*.md runs as written. An example that has
import lines is complete on its own: it runs in a fresh namespace, so a
reader who copies it into a new interpreter gets no NameError. One without
any import continues the example before it on the page (it runs in that
example's namespace), as a reader going down the page would run it."""

import pathlib
import re
import warnings

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
IMPORT = re.compile(r"^(import|from)\s+\S+", re.M)


def _examples(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("path", [p for p in PAGES if _examples(p)], ids=lambda p: p.name)
def test_examples_run_as_written(path):
    from sklearn.exceptions import ConvergenceWarning

    namespace = None
    for index, code in enumerate(_examples(path)):
        if re.search(r"^(import|from) torch", code, re.M):
            pytest.importorskip("torch")
        if IMPORT.search(code) or namespace is None:
            namespace = {"__name__": "__doc__"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            exec(compile(code, f"{path.name}, example {index}", "exec"), namespace)


def test_examples_were_found():
    assert sum(len(_examples(p)) for p in PAGES) >= 3
