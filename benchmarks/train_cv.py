"""Cross-validation inside the TRAINING series of real_data.py's data sets.

A tool for choosing a configuration without looking at a test set (issue
15: "do not tune on" the data sets never tuned on). Each ``--config
NAME=JSON`` (parameters merged over real_data.py's ``CONFIG``) is fitted in
real_data.py's Pipeline (``SequenceScaler``, ``SequencePatcher(max_steps=
MAX_STEPS)``, ``RNNClassifier``) on the folds of a repeated stratified
k-fold split of the training series only, and scored on the held-out
training series; the test split is never loaded into a model. Fold r of
repeat k is fitted with ``random_state=k * n_splits + r``. A config's key
``"ensemble": K`` makes the model a soft vote of K seeds
(``real_data.make_model``); ``"length_quantile": q`` is the patcher's
(``SequencePatcher(max_steps, length_quantile=q)``); ``"slices": n``
wraps each member in ``real_data.WindowSlices`` (window slicing), ``"phases":
n`` in ``WindowSlices(kind="phase")`` (the patch phases).

    python benchmarks/train_cv.py --datasets ArrowHead,GunPoint \\
        --config 'base={}' --config 'l2={"alpha": 0.01}'

``--subsample N`` keeps N training series (stratified, fixed seed 0) before
the split: a small-training-set version of a large data set.
"""

import argparse
import json
import sys

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

from real_data import CONFIG, MAX_STEPS, load_classification, run_bptt, write_json

from bptt import RNNClassifier


def _take(X, idx):
    return [X[i] for i in idx] if isinstance(X, list) else X[idx]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="ArrowHead,GunPoint")
    ap.add_argument("--config", action="append", required=True,
                    help="NAME=JSON, parameters merged over CONFIG (repeatable)")
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--subsample", type=int, default=0,
                    help="keep N training series (stratified) before the split")
    ap.add_argument("--max-steps", type=int, default=MAX_STEPS)
    ap.add_argument("--skip", type=int, default=0,
                    help="skip the first N folds (already run: a run with more repeats "
                         "adds folds; fold k keeps random_state k)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    configs = {}
    for item in args.config:
        name, _, text = item.partition("=")
        configs[name] = {**CONFIG, **json.loads(text)}
    results = []
    for ds in args.datasets.split(","):
        X, y, _, _ = load_classification(ds)  # the test split is dropped here
        if args.subsample:
            keep, _ = train_test_split(np.arange(len(y)), train_size=args.subsample,
                                       stratify=y, random_state=0)
            X, y = _take(X, keep), y[keep]
        folds = list(RepeatedStratifiedKFold(n_splits=args.splits, n_repeats=args.repeats,
                                             random_state=0).split(np.zeros(len(y)), y))
        for name, params in configs.items():
            params = dict(params)
            ensemble = params.pop("ensemble", 1)
            quantile = params.pop("length_quantile", 1.0)
            slices = params.pop("slices", 0)
            phases = params.pop("phases", 0)
            correct = total = 0
            accs, secs = [], []
            for seed, (tr, va) in enumerate(folds):
                if seed < args.skip:
                    continue
                r = run_bptt(RNNClassifier, params, _take(X, tr), y[tr], _take(X, va), y[va],
                             seed, max_steps=args.max_steps, ensemble=ensemble,
                             length_quantile=quantile, slices=slices, phases=phases)
                accs.append(r["score"])
                secs.append(r["seconds"])
                correct += round(r["score"] * len(va))
                total += len(va)
                print(f"{ds} {name} fold {seed}: {r['score']:.3f} ({len(tr)}/{len(va)}) "
                      f"{r['n_iter']} ep loss {r['final_loss']:.4f} {r['seconds']:.1f}s",
                      flush=True)
            print(f"| {ds} | {name} | {correct / total:.3f} ({correct}/{total}) | "
                  f"{np.std(accs):.3f} | {np.mean(secs):.1f}s |", flush=True)
            results.append({"dataset": ds, "config": name, "params": params,
                            "accuracy": correct / total, "folds": accs, "seconds": secs})
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
