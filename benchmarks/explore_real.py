"""Named configurations on real_data.py's data sets, bptt only (issue 15).

The exploration behind docs/benchmarks.md section 3 ("Ragged input and one
configuration"; "The regressor's defaults"): each ``--config NAME=JSON``
(parameters over the estimators' defaults) on each data set for each seed,
through the same loaders, splits and ``SequenceScaler`` Pipeline as
``real_data.py``; JapaneseVowels as the list of unequal-length series
(ragged input) unless ``--padded``. sunspots: ``RNNRegressor`` on the same
windows and one-step-ahead RMSE as ``real_data.py``'s forecasting row.
``--max-steps N`` puts ``SequencePatcher(max_steps=N)`` after the scaler
(real_data.py's ``MAX_STEPS``; default 0: no patcher, as before).

Two experiments of docs/benchmarks.md ("Capping the recurrent steps"),
neither an estimator option: ``--update-gate-bias B`` sets the GRU update
gate's bias block (z, the rows H..2H of every layer's b_h; h = (1-z)*n +
z*h_prev, so a positive bias carries the state) to B after the estimator's
initialisation, or with ``chrono`` to log(U(1, T-1)) per unit (Tallec and
Ollivier 2018), T the longest training series after the patcher;
``--min-updates N`` raises max_epochs to ceil(N / minibatches per epoch)
for each data set (an update budget that follows the data size). A
config's key ``"ensemble": K`` makes the model a soft vote of K seeds
(``real_data.make_model``).

    python benchmarks/explore_real.py --datasets GunPoint,JapaneseVowels \\
        --seeds 0-1 --config 'bi={"bidirectional": true, "output": "mean"}'
"""

import argparse
import json
import math
import sys

import numpy as np

from real_data import (SUNSPOTS_TEST_YEARS, SUNSPOTS_WINDOW, _seeds, load_classification,
                       load_sunspots, run_bptt, summary, to_fixed_length, write_json)

from bptt import RNNClassifier, RNNRegressor

# --update-gate-bias: the value, "chrono", or None; and the longest series
GATE_BIAS = {"value": None, "T": 1}


class _GateBias:
    """Mixin: after the network is built, set the GRU update gate's biases."""

    def _initialize(self, X):
        super()._initialize(X)
        value = GATE_BIAS["value"]
        if value is None:
            return
        if self.cell != "gru":
            raise SystemExit("--update-gate-bias needs cell='gru'")
        H, params = self.net_.hidden_size, self.net_.params
        rng = np.random.default_rng(0)
        for name in params:
            if name == "b_h" or name.startswith("b_h_l"):  # not b_hn
                b = params[name].copy()
                b[H:2 * H] = (np.log(rng.uniform(1, max(GATE_BIAS["T"] - 1, 2), H))
                              if value == "chrono" else float(value))
                params[name] = b
        self.net_.params = params


class GateBiasClassifier(_GateBias, RNNClassifier):
    pass


class GateBiasRegressor(_GateBias, RNNRegressor):
    pass


def sunspots_data():
    _, s = load_sunspots()
    n_test, W = SUNSPOTS_TEST_YEARS, SUNSPOTS_WINDOW
    n_train = s.size - n_test
    mu, sd = s[:n_train].mean(), s[:n_train].std()
    X_train = np.stack([s[t - W:t] for t in range(W, n_train)])[:, :, None]
    X_test = np.stack([s[t - W:t] for t in range(n_train, s.size)])[:, :, None]
    y_train = (s[W:n_train] - mu) / sd

    def score(pipe):
        pred = pipe.predict(X_test) * sd + mu
        return float(np.sqrt(np.mean((pred - s[n_train:]) ** 2)))

    return X_train, y_train, score


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="GunPoint,JapaneseVowels")
    ap.add_argument("--seeds", default="0-1")
    ap.add_argument("--config", action="append", required=True,
                    help="NAME=JSON, parameters over the defaults (repeatable)")
    ap.add_argument("--padded", action="store_true",
                    help="JapaneseVowels padded (last timestep repeated), not ragged")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="SequencePatcher(max_steps=N) after the scaler (0: none)")
    ap.add_argument("--update-gate-bias", default=None,
                    help="GRU update-gate bias after initialisation: a number or 'chrono'")
    ap.add_argument("--min-updates", type=int, default=0,
                    help="raise max_epochs to ceil(N / minibatches per epoch)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    seeds = _seeds(args.seeds)
    configs = {}
    for item in args.config:
        name, _, text = item.partition("=")
        configs[name] = json.loads(text)
    results = []
    for ds in args.datasets.split(","):
        if ds == "sunspots":
            X_train, y_train, score = sunspots_data()
            X_test = y_test = None
            cls = RNNRegressor
        else:
            X_train, y_train, X_test, y_test = load_classification(ds)
            score, cls = None, RNNClassifier
            if isinstance(X_train, list) and args.padded:
                T = max(x.shape[0] for x in X_train + X_test)
                X_train, X_test = to_fixed_length(X_train, T), to_fixed_length(X_test, T)
        if args.update_gate_bias is not None:
            GATE_BIAS["value"] = args.update_gate_bias
            T = max(len(x) for x in X_train) if isinstance(X_train, list) else X_train.shape[1]
            GATE_BIAS["T"] = math.ceil(T / math.ceil(T / args.max_steps)) if args.max_steps else T
            cls = GateBiasRegressor if cls is RNNRegressor else GateBiasClassifier
        for name, params in configs.items():
            if args.min_updates:
                batches = math.ceil(len(y_train) / min(params.get("batch_size", 32),
                                                       len(y_train)))
                default = cls().max_epochs
                params = {**params, "max_epochs": max(params.get("max_epochs", default),
                                                      math.ceil(args.min_updates / batches))}
            runs = []
            fit_params = dict(params)
            ensemble = fit_params.pop("ensemble", 1)
            for seed in seeds:
                r = run_bptt(cls, fit_params, X_train, y_train, X_test, y_test, seed,
                             score=score, max_steps=args.max_steps, ensemble=ensemble)
                print(f"{ds} {name} seed {seed}: {r['score']:.4f} {r['n_iter']} ep "
                      f"loss {r['final_loss']:.4f} {r['seconds']:.1f}s", flush=True)
                runs.append(r)
            s = summary([r["score"] for r in runs], max if ds == "sunspots" else min)
            line = (f"| {ds} | {name} | {s['mean']:.3f}±{s['std']:.3f} [{s['worst']:.3f}] | "
                    f"{np.mean([r['n_iter'] for r in runs]):.0f} ep | "
                    f"{np.mean([r['seconds'] for r in runs]):.1f}s |")
            print(line, flush=True)
            results.append({"dataset": ds, "config": name, "params": params, "runs": runs})
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
