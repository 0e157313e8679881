"""The spread of the learning tests' scores, to choose their thresholds.

A different SIMD build or thread split changes the summation order, which
perturbs training as another random_state does. This runs each task of
tests/test_learning.py for several random_states, under each BPTT_SIMD value
the CPU runs (one process each: the build is chosen at import) and with 1
and 2 threads, and prints per task the worst and best score, the threshold,
the worst run's margin to it and what an untrained model scores.

    python benchmarks/learning_margins.py                  # seeds 0-9, every task
    python benchmarks/learning_margins.py --seeds 0-29 --tasks adding_problem_relu_identity_init

It takes minutes (the tasks run serially, each a fraction of a second to ten
seconds); it is not part of the benchmark suite.
"""

import argparse
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, os.pardir, "tests")


def _seeds(text):
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def worker(tasks, seeds, threads):
    """Run in a child process: print one JSON line per run."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, TESTS)
    import test_learning
    from bptt.rnn import compiled_variant

    warnings.simplefilter("ignore", ConvergenceWarning)
    variant = compiled_variant()
    for name in tasks:
        task = test_learning.TASKS[name][0]
        with threadpool_limits(limits=1, user_api="blas"):
            untrained = float(task(untrained=True))
        print(json.dumps({"task": name, "variant": variant, "untrained": untrained}),
              flush=True)
        first = {}  # seed -> score with the first thread limit
        for n_threads in threads:
            with threadpool_limits(limits=n_threads, user_api="blas"):
                for i, seed in enumerate(seeds):
                    score = float(task(random_state=seed))
                    print(json.dumps({"task": name, "variant": variant,
                                      "threads": n_threads, "seed": seed,
                                      "score": score}), flush=True)
                    if n_threads == threads[0]:
                        first[seed] = score
                    elif i == 1 and all(first.get(s) == scores for s, scores in
                                        zip(seeds[:2], (prev, score))):
                        # the first two seeds scored the same bit for bit as
                        # with the first limit: the task's networks are too
                        # small to split over threads (or the split sums in
                        # the same order), so would the other seeds
                        print(json.dumps({"task": name, "variant": variant,
                                          "threads": n_threads,
                                          "same_as_threads": threads[0]}), flush=True)
                        break
                    prev = score


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="random_states, e.g. 0-9 or 0,3,5")
    parser.add_argument("--threads", default="1,2", help="thread limits (1,2)")
    parser.add_argument("--variants", default=None,
                        help="BPTT_SIMD values (default: every build the CPU runs)")
    parser.add_argument("--tasks", default=None, help="comma-separated task names")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, TESTS)
    import test_learning

    tasks = args.tasks.split(",") if args.tasks else list(test_learning.TASKS)
    unknown = sorted(set(tasks) - set(test_learning.TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; the tasks are {list(test_learning.TASKS)}")
    seeds = _seeds(args.seeds)
    threads = [int(t) for t in args.threads.split(",")]
    if args.worker:
        worker(tasks, seeds, threads)
        return 0
    if args.variants:
        variants = args.variants.split(",")
    else:
        from bptt import _vmath
        variants = list(_vmath.cpu_variants())
    runs = []
    for variant in variants:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--seeds", args.seeds,
               "--threads", args.threads, "--tasks", ",".join(tasks)]
        env = {**os.environ, "BPTT_SIMD": variant}
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                run = json.loads(line)
                runs.append(run)
                print(f"  {run}", file=sys.stderr, flush=True)
        if proc.returncode:
            return proc.returncode
    print(f"seeds {args.seeds}, threads {args.threads}, builds {','.join(variants)}")
    print(f"{'task':40s} {'need':>8s} {'worst':>8s} {'median':>8s} {'best':>8s} "
          f"{'margin':>7s} {'untrained':>9s}")
    for name in tasks:
        _, sense, threshold = test_learning.TASKS[name]
        scores = sorted(r["score"] for r in runs if r["task"] == name and "score" in r)
        same = sorted({f"{r['variant']}/{r['threads']}" for r in runs
                       if r["task"] == name and "same_as_threads" in r})
        untrained = [r["untrained"] for r in runs if r["task"] == name and "untrained" in r]
        if sense == "min":
            worst, best, need = scores[0], scores[-1], f">={threshold:g}"
            margin = worst - threshold
            blank = max(untrained)  # the untrained score closest to passing
        else:
            worst, best, need = scores[-1], scores[0], f"<{threshold:g}"
            margin = threshold - worst
            blank = min(untrained)
        median = scores[len(scores) // 2]
        print(f"{name:40s} {need:>8s} {worst:8.4f} {median:8.4f} {best:8.4f} "
              f"{margin:7.4f} {blank:9.4f}")
        if same:
            print(f"    (build/threads {', '.join(same)}: the same scores as with "
                  f"{threads[0]} thread(s), bit for bit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
