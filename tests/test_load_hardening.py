"""bptt.load of corrupt or hostile files: a ValueError, never another
exception, a hang, or an allocation the file's size does not justify
(issue 16, item 6). save refuses a directory."""

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import bptt
from bptt.persistence import _digest

INVALID = "not a valid bptt model file"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small fitted classifier, its file's bytes, and data to predict."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 4, 2))
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 12)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = bptt.RNNClassifier(hidden_size=3, max_epochs=2, random_state=0,
                                 cell="rnn").fit(X, y)  # the entry counts of the Elman cell
    path = clf.save(tmp_path_factory.mktemp("saved") / "m.npz")
    with open(path, "rb") as f:
        raw = f.read()
    return clf, raw, X


def _entries(raw):
    """{name: bytes of the .npy entry} of a saved file."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def _zip(entries, path, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npy_header(shape, descr="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _with_meta(raw, path, edit):
    """A copy of the saved file with its metadata edited and the checksum
    recomputed: what a hostile writer can produce."""
    entries = _entries(raw)
    with np.load(io.BytesIO(raw), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "meta"}
        meta = json.loads(str(f["meta"]))
    edit(meta, arrays)
    meta.pop("sha256")
    meta["arrays"] = {k: [list(v.shape), v.dtype.str] for k, v in arrays.items()}
    meta["sha256"] = _digest(meta, arrays)
    entries = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
    entries["meta.npy"] = _npy(np.array(json.dumps(meta)))
    return _zip(entries, path)


def _load_in_child(paths, timeout=300):
    """bptt.load of each path in a child process under a 2 GB address-space
    cap and a timeout, so that a regression fails instead of filling memory
    or hanging: [(exception type name, message)] (("", "") for success)."""
    code = (
        "import json, resource, sys, bptt\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "out = []\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        bptt.load(path)\n"
        "        out.append(['', ''])\n"
        "    except BaseException as exc:\n"
        "        out.append([type(exc).__name__, str(exc)])\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_resources_are_checked_before_allocating(saved, tmp_path):
    _, raw, _ = saved
    entries = _entries(raw)
    cases = {}

    # an .npy header declaring 80 GB in an otherwise valid file
    cases["npy_80GB"] = (_zip(dict(entries, **{"param/W_hh.npy": _npy_header((10**10,))
                                               + b"\0" * 64}), tmp_path / "a.npz"),
                         r"declares shape \(10000000000,\) of float64 \(80000000000 bytes\) but holds 64 bytes")
    # a zip whose directory declares 28.8 GB for an entry of a few bytes
    good = _zip({"meta.npy": _npy_header((3600000000,)) + b"\0" * 64}, tmp_path / "b.npz")
    data = bytearray(good.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 0xF0000000)  # uncompressed size
    (tmp_path / "b.npz").write_bytes(data)
    cases["zip_declares_more"] = (tmp_path / "b.npz", r"declares 4026531840 bytes, more than the file's")
    # a 7 kB file declaring hidden_size=4000, and one declaring 10**8

    def hidden(size):
        def edit(meta, arrays):
            meta["net"]["hidden_size"] = meta["params"]["hidden_size"] = size
        return edit
    for size in (4000, 10**8):
        cases[f"hidden_{size}"] = (
            _with_meta(raw, tmp_path / f"h{size}.npz", hidden(size)),
            rf"stored parameters have the shapes .*'W_hh': \(3, 3\).* but the declared "
            rf"network \(input_size=2, hidden_size={size}, output_size=3, cell=rnn\) has "
            rf".*'W_hh': \({size}, {size}\)")
    results = _load_in_child([path for path, _ in cases.values()])
    for (name, (path, message)), (exc, text) in zip(cases.items(), results):
        assert exc == "ValueError", (name, exc, text)
        assert INVALID in text, (name, text)
        import re
        assert re.search(message, text), (name, text)


def test_deeply_nested_metadata(saved, tmp_path):
    _, raw, _ = saved
    entries = _entries(raw)
    deep = "[" * 100_000 + "]" * 100_000
    path = _zip(dict(entries, **{"meta.npy": _npy(np.array(deep))}), tmp_path / "d.npz")
    with pytest.raises(ValueError, match=f"{INVALID}: its metadata is nested too deeply"):
        bptt.load(path)


def test_compressed_or_foreign_entries_are_refused(saved, tmp_path):
    _, raw, _ = saved
    entries = _entries(raw)
    path = _zip(entries, tmp_path / "c.npz", zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match="compressed or encrypted"):
        bptt.load(path)
    path = _zip(dict(entries, **{"notes.txt": b"hi"}), tmp_path / "n.npz")
    with pytest.raises(ValueError, match="entry 'notes.txt' is not one that save writes"):
        bptt.load(path)
    path = _zip(dict(entries, **{"param/W_hh.npy": _npy(np.array([{}], dtype=object))}),
                tmp_path / "o.npz")
    with pytest.raises(ValueError, match="dtype object, which save never writes"):
        bptt.load(path)
    most = bptt.persistence._max_entries()
    many = {f"x{i}.npy": _npy(np.zeros(1)) for i in range(most)}
    with pytest.raises(ValueError, match=f"holds {len(entries) + most} entries; a bptt "
                                         f"file holds at most {most}"):
        bptt.load(_zip(dict(entries, **many), tmp_path / "many.npz"))


def test_non_regular_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match=f"{INVALID}: it is a directory"):
        bptt.load(tmp_path)
    with pytest.raises(ValueError, match="cannot be opened") as info:
        bptt.load(tmp_path / "missing.npz")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    # a FIFO must not block: opening one for reading waits for a writer
    (exc, text), = _load_in_child_with_timeout([fifo])
    assert exc == "ValueError" and "it is a FIFO, not a regular file" in text, text


def _load_in_child_with_timeout(paths):
    try:
        return _load_in_child(paths, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("bptt.load blocked on a FIFO")


def test_save_refuses_a_directory(saved, tmp_path):
    clf, _, _ = saved
    target = tmp_path / "models"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        clf.save(target)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        clf.save(str(tmp_path / "new") + os.sep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no models.npz
    assert list(target.iterdir()) == []
    assert os.path.exists(clf.save(target / "m"))  # a file path still works


def test_bit_flips_give_valueerror_or_the_same_model(saved, tmp_path):
    # every bit of the zip's first 32 bytes (the first local header) and last
    # 64 (the end of the central directory) and 400 more at random
    clf, raw, X = saved
    rng = np.random.default_rng(16)
    n_bits = 8 * len(raw)
    bits = {*range(256), *range(n_bits - 512, n_bits),
            *rng.choice(n_bits, 400, replace=False).tolist()}
    want = clf.predict_proba(X)
    path = tmp_path / "flip.npz"
    loaded = 0
    for bit in sorted(bits):
        data = bytearray(raw)
        data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(data)
        try:
            again = bptt.load(path)
        except ValueError as exc:
            assert INVALID in str(exc), (bit, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"flipping bit {bit} gives {type(exc).__name__}: {exc}")
        # a flip load accepts (a timestamp, say) changes nothing that matters
        np.testing.assert_array_equal(again.predict_proba(X), want)
        loaded += 1
    assert loaded < len(bits) // 2  # the test does reach the checks
