"""Command line: ``python -m bptt demo`` (or the ``bptt`` console script).

The demo trains an :class:`~bptt.RNNClassifier` on scikit-learn's digits read
as sequences (each 8x8 image row by row: 8 timesteps of 8 pixel values) and
an :class:`~bptt.RNNRegressor` forecasting a noisy sine wave from its last 20
values, shows the training progress and prints the test scores and times.

``python -m bptt demo gradients`` shows vanishing and exploding gradients on
the adding problem (bptt/_gradient_demo.py): a table, and a PNG figure when
matplotlib is installed.
"""

import argparse
import sys
import time
import warnings


def _digits(args):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from . import RNNClassifier

    digits = load_digits()
    X = digits.data.reshape(-1, 8, 8) / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, stratify=digits.target, random_state=0)
    print(f"\n[1/2] RNNClassifier on digits as sequences: X_train {X_train.shape} "
          f"(n_samples, n_timesteps, n_features), {len(X_test)} test images")
    # the demo's models predate issue 15's defaults (GRU, float32): kept, so
    # its scores and times stay comparable
    clf = RNNClassifier(hidden_size=64, learning_rate=0.003, max_epochs=args.epochs,
                        early_stopping=True, n_iter_no_change=10, cell="rnn",
                        dtype="float64", learning_rate_schedule="constant",
                        random_state=args.seed, verbose=args.verbose)
    tic = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - tic
    accuracy = clf.score(X_test, y_test)
    print(f"      test accuracy {accuracy:.4f} after {clf.n_iter_} epochs, "
          f"trained in {seconds:.2f}s")
    return accuracy, seconds


def _sine(args):
    import numpy as np

    from . import RNNRegressor

    rng = np.random.default_rng(args.seed)
    n_points, window = 3000, 20
    series = np.sin(0.1 * np.arange(n_points)) + 0.1 * rng.standard_normal(n_points)
    X = np.stack([series[i:i + window] for i in range(n_points - window)])
    y = series[window:]
    split = 2000  # train on the past, test on the future
    print(f"\n[2/2] RNNRegressor forecasting a noisy sine wave one step ahead from "
          f"its last {window} values: X_train {X[:split].shape}, {len(X) - split} "
          f"test windows")
    reg = RNNRegressor(hidden_size=16, max_epochs=args.epochs, random_state=args.seed,
                       verbose=args.verbose, cell="rnn", dtype="float64",
                       learning_rate=0.01, learning_rate_schedule="constant",
                       n_iter_no_change=10)
    tic = time.perf_counter()
    reg.fit(X[:split], y[:split])
    seconds = time.perf_counter() - tic
    r2 = reg.score(X[split:], y[split:])
    print(f"      test R^2 {r2:.4f} (predicting the mean scores 0) after {reg.n_iter_} "
          f"epochs, trained in {seconds:.2f}s")
    return r2, seconds


def demo(args):
    """Train both estimators and print their scores and times (or run the
    gradients demo)."""
    from sklearn.exceptions import ConvergenceWarning

    from . import __version__

    if args.which == "gradients":
        from . import _gradient_demo

        with _blas_limits(args.blas_threads):
            print(f"bptt {__version__} demo: vanishing and exploding gradients")
            _gradient_demo.run(seconds=args.seconds, seed=args.seed, png=args.png or None)
        return 0
    print(f"bptt {__version__} demo: recurrent networks trained by backpropagation "
          f"through time")
    tic = time.perf_counter()
    with _blas_limits(args.blas_threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        accuracy, t_clf = _digits(args)
        r2, t_reg = _sine(args)
    total = time.perf_counter() - tic
    print(f"\nSummary: digits accuracy {accuracy:.4f} ({t_clf:.1f}s), sine R^2 "
          f"{r2:.4f} ({t_reg:.1f}s); total {total:.1f}s")
    return 0


class _blas_limits:
    """BLAS limited to ``threads`` threads inside (0: left alone; nothing
    without threadpoolctl). The per-timestep GEMMs are small: extra BLAS
    threads mostly wait."""

    def __init__(self, threads):
        self.threads, self.limits = threads, None

    def __enter__(self):
        if self.threads:
            try:
                from threadpoolctl import threadpool_limits

                self.limits = threadpool_limits(limits=self.threads, user_api="blas")
            except ImportError:  # pragma: no cover
                pass
        return self

    def __exit__(self, *exc):
        if self.limits is not None:
            self.limits.restore_original_limits()
        return False


def _positive_float(text):
    """An argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text}")
    return value


def _int_in(low, high=None):
    """An argparse type: an integer in [low, high]. A bad value is a usage
    error (status 2, with the usage line), not a traceback from the model."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < low or (high is not None and value > high):
            wanted = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {wanted}; got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def main(argv=None):
    """Entry point of ``python -m bptt`` and of the ``bptt`` console script."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="bptt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a classifier and a regressor, print scores; "
                                    "'demo gradients': vanishing and exploding gradients")
    p.add_argument("which", nargs="?", choices=("gradients",), default=None,
                   help="gradients: the gradient flow on the adding problem (T=100), "
                        "a table and a PNG figure")
    p.add_argument("--epochs", type=_int_in(1), default=40,
                   help="max epochs per model, >= 1 (40)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0,
                   help="random seed, 0 to 2**32 - 1 (0)")
    p.add_argument("--verbose", type=_int_in(0, 2), default=1,
                   help="0 silent, 1 progress bar (tqdm) or lines, 2 a line per epoch")
    p.add_argument("--blas-threads", type=_int_in(0), default=1,
                   help="BLAS threads during training (1); 0 leaves BLAS alone")
    p.add_argument("--seconds", type=_positive_float, default=5.0,
                   help="demo gradients: training budget per network in seconds (5)")
    p.add_argument("--png", default="bptt_gradients.png",
                   help="demo gradients: where to write the figure "
                        "(bptt_gradients.png; '' for none)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
