"""The measurements that chose the estimators' training defaults (issue 15).

Runs named configurations of ``RNNClassifier`` (each a dict of parameters
over the defaults) on the real data sets of ``real_data.py`` (same loaders,
same ``SequenceScaler`` Pipeline, same train/test splits) for some seeds,
and prints one line per fit and a table of mean±std [min] test accuracy,
epochs run and seconds per fit. No baselines: ``real_data.py`` has them.

    python benchmarks/tune_defaults.py --datasets GunPoint,BasicMotions \\
        --seeds 0-1 --configs plateau10,constant300

``--configs`` picks from CANDIDATES below (``all`` runs every one);
``--json FILE`` keeps every per-seed figure.
"""

import argparse
import json
import sys
import time

import numpy as np

from real_data import _seeds, load_classification, run_bptt, to_fixed_length

from bptt import RNNClassifier

# Candidates over the estimator's defaults. "old" = the defaults before
# issue 15 (constant rate, stop after 10 epochs without a 1e-4 improvement,
# 100 epochs, float64), written out so the table keeps them whatever the
# defaults become.
OLD = {"learning_rate_schedule": "constant", "n_iter_no_change": 10, "tol": 1e-4,
       "max_epochs": 100, "dtype": "float64"}
GRU = {"cell": "gru", "hidden_size": 64}
CANDIDATES = {
    "old": OLD,
    "constant300": {**OLD, "max_epochs": 300, "n_iter_no_change": 300},
    "plateau10": {**OLD, "learning_rate_schedule": "plateau", "max_epochs": 300},
    "plateau20": {**OLD, "learning_rate_schedule": "plateau", "max_epochs": 300,
                  "n_iter_no_change": 20},
    "plateau20_f32": {**OLD, "learning_rate_schedule": "plateau", "max_epochs": 300,
                      "n_iter_no_change": 20, "dtype": "float32"},
    "plateau10_200": {**OLD, "learning_rate_schedule": "plateau", "max_epochs": 200},
    "cosine300": {**OLD, "learning_rate_schedule": "cosine", "max_epochs": 300,
                  "n_iter_no_change": 300},
    "gru_constant300_f32": {**OLD, **GRU, "max_epochs": 300, "n_iter_no_change": 300,
                            "dtype": "float32"},
    "gru_plateau20_f32": {**OLD, **GRU, "learning_rate_schedule": "plateau",
                          "max_epochs": 300, "n_iter_no_change": 20, "dtype": "float32"},
    "gru_cosine300_f32": {**OLD, **GRU, "learning_rate_schedule": "cosine",
                          "max_epochs": 300, "n_iter_no_change": 300, "dtype": "float32"},
    "gru32_constant200_f32": {**OLD, "cell": "gru", "max_epochs": 200,
                              "n_iter_no_change": 200, "dtype": "float32"},
    "gru32_plateau50_f32": {**OLD, "cell": "gru", "learning_rate_schedule": "plateau",
                            "max_epochs": 300, "n_iter_no_change": 50, "dtype": "float32"},
    "gru32_cosine200_f32": {**OLD, "cell": "gru", "learning_rate_schedule": "cosine",
                            "max_epochs": 200, "n_iter_no_change": 200, "dtype": "float32"},
    "gru32_lr003_constant300_f32": {**OLD, "cell": "gru", "learning_rate": 0.003,
                                    "max_epochs": 300, "n_iter_no_change": 300,
                                    "dtype": "float32"},
    "gru32_plateau10_f32": {**OLD, "cell": "gru", "learning_rate_schedule": "plateau",
                            "max_epochs": 300, "dtype": "float32"},
    "gru32_cosine300_f32": {**OLD, "cell": "gru", "learning_rate_schedule": "cosine",
                            "max_epochs": 300, "n_iter_no_change": 300, "dtype": "float32"},
    "F1_constant300": {**OLD, "cell": "gru", "learning_rate": 0.003, "max_epochs": 300,
                       "n_iter_no_change": 300, "dtype": "float32"},
    "F2_plateau50": {**OLD, "cell": "gru", "learning_rate": 0.003,
                     "learning_rate_schedule": "plateau", "max_epochs": 300,
                     "n_iter_no_change": 50, "dtype": "float32"},
    "F2_plateau50_f64": {**OLD, "cell": "gru", "learning_rate": 0.003,
                         "learning_rate_schedule": "plateau", "max_epochs": 300,
                         "n_iter_no_change": 50, "dtype": "float64"},
    "F3_gru64_plateau50": {**OLD, "cell": "gru", "hidden_size": 64, "learning_rate": 0.003,
                           "learning_rate_schedule": "plateau", "max_epochs": 300,
                           "n_iter_no_change": 50, "dtype": "float32"},
    "defaults": {},  # whatever the defaults are now
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="GunPoint,ItalyPowerDemand,BasicMotions")
    ap.add_argument("--seeds", default="0-1")
    ap.add_argument("--configs", default="all")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    seeds = _seeds(args.seeds)
    names = list(CANDIDATES) if args.configs == "all" else args.configs.split(",")
    for name in names:
        if name not in CANDIDATES:
            ap.error(f"unknown config {name!r}; choose from {sorted(CANDIDATES)}")
    results = []
    for ds in args.datasets.split(","):
        X_train, y_train, X_test, y_test = load_classification(ds)
        if isinstance(X_train, list) or isinstance(X_test, list):
            length = max(x.shape[0] for x in list(X_train) + list(X_test))
            X_train, X_test = to_fixed_length(X_train, length), to_fixed_length(X_test, length)
            print(f"NOTE {ds}: padded to T={length} (last timestep repeated)",
                  file=sys.stderr)
        for name in names:
            for seed in seeds:
                r = run_bptt(RNNClassifier, CANDIDATES[name], X_train, y_train, X_test,
                             y_test, seed)
                r.update(dataset=ds, config=name, seed=seed)
                results.append(r)
                print(f"{ds:16s} {name:20s} seed {seed}: acc {r['score']:.3f} "
                      f"{r['n_iter']:4d} epochs ({r['stopped']}) loss "
                      f"{r['final_loss']:.4f} {r['seconds']:.1f}s", file=sys.stderr,
                      flush=True)
    print(f"\n| config | " + " | ".join(args.datasets.split(",")) + " |")
    print("|---|" + "---|" * len(args.datasets.split(",")))
    for name in names:
        cells = []
        for ds in args.datasets.split(","):
            rs = [r for r in results if r["config"] == name and r["dataset"] == ds]
            acc = np.array([r["score"] for r in rs])
            cells.append(f"{acc.mean():.3f}±{acc.std():.3f} [{acc.min():.3f}] "
                         f"{np.mean([r['n_iter'] for r in rs]):.0f} ep "
                         f"{np.mean([r['seconds'] for r in rs]):.1f}s")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"configs": {n: CANDIDATES[n] for n in names}, "results": results,
                       "time": time.strftime("%Y-%m-%d %H:%M:%S")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
