"""Continual learning: replay + warm start + the no-forgetting gate, against retraining.

Data: scikit-learn's bundled handwritten digits (``load_digits``: 1,797 8x8 images, 10
classes; shipped inside the package, nothing is downloaded), scaled to [0, 1] and taken in
file order as a stream cut into 6 windows of 299-300 rows. Windows 4-6 are rotated by 90
degrees (a new scanner: a covariate shift, the labels mean the same), so a model that learns
only from the new windows forgets the old regime. Each window keeps a stratified 40 % as its
held-out part (120 rows, so the gate's 0.02 is 2.4 rows, not 1.8 as with 30 %); the rest
(179-180 rows) is its training part.

One model family for all three strategies: scikit-learn's ``MLPClassifier`` (one hidden layer
of 256 ReLU units, Adam, alpha 1e-3; a fit from scratch runs scikit-learn's default 200
epochs, which it uses up on every window here). After every window each strategy has a model:

* (a) newest only: a new model fitted on the newest window's training part;
* (b) everything: a new model fitted on the training parts of all windows so far;
* (c) mlcd: the newest window's training part plus a replay memory of the older windows'
  training parts drawn with mlcd's own ``mlcd.logdata.windows.replay_sample`` (600 rows,
  ``per_window``, keyed by ``request_id``), trained for 60 epochs (``partial_fit``) from a
  copy of the served model (mlcd's ``warm_start`` default, the champion; ``--warm-from
  candidate`` continues from the newest candidate even if it was refused). The candidate
  replaces the served model only if mlcd's no-forgetting gate (``parse_gate`` /
  ``check_gates``: ``no past window loses more than 0.02 accuracy``) passes on the held-out
  parts of all past windows; otherwise the served model stays (a refusal).

Measured per strategy: the average accuracy over the windows seen so far (mean over the 6
steps of the mean held-out accuracy on windows 1..t) and the final mean over all 6; backward
transfer (BWT: mean over windows 1-5 of the accuracy after the last window minus the
accuracy just after the window was learned); the worst drop of one window's accuracy from
one model to the next; the largest fall of a window below its best so far; the training time
(only the fit / partial_fit calls, summed over the 6 steps; wall with ``perf_counter`` and
CPU with ``process_time``, BLAS on one thread); for (c) the gate's refusals, for (a) and (b)
the steps whose model would not have passed the same gate. Each repetition uses another seed
(held-out split, model initialisation, replay sample); the table shows medians over them.

    .venv/bin/python benchmarks/bench_continual.py [--reps 5] [--json] [--verbose] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report
from mlcd.evaluate.gate import check_gates, parse_gate
from mlcd.logdata.windows import replay_sample

WINDOWS = 6
SHIFT_AT = 3  # windows 4-6 (index 3-5) are rotated
STRATEGIES = {
    "a": "(a) newest window only",
    "b": "(b) everything so far",
    "c": "(c) mlcd: replay + warm start + gate",
}


@dataclass
class Window:
    """One window of the stream: a training part (keyed rows) and a held-out part."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    ids: list[str]
    x_test: np.ndarray
    y_test: np.ndarray

    def frame(self) -> pd.DataFrame:
        """The training part as a table with a ``request_id`` (what the prediction log has)."""
        columns = [f"px{i}" for i in range(self.x_train.shape[1])]
        frame = pd.DataFrame(self.x_train, columns=columns)
        frame["label"] = self.y_train
        frame["request_id"] = self.ids
        return frame


@dataclass
class Trace:
    """One strategy's run over the stream: ``acc[t][i]`` = accuracy on window i after window t."""

    acc: np.ndarray
    fit_s: float
    cpu_s: float
    refusals: int = 0
    replay_s: float = 0.0
    gate_details: list[str] = field(default_factory=list)

    def summary(self, tolerance: float) -> dict[str, float]:
        acc = self.acc
        last = len(acc) - 1
        seen = [float(np.mean(acc[t, : t + 1])) for t in range(len(acc))]
        drops = [acc[t - 1, i] - acc[t, i] for t in range(1, len(acc)) for i in range(t)]
        forgetting = [
            float(np.max(acc[i : t + 1, i]) - acc[t, i])
            for t in range(1, len(acc))
            for i in range(t)
        ]
        return {
            "avg_acc": float(np.mean(seen)),
            "final_acc": seen[-1],
            "bwt": float(np.mean([acc[last, i] - acc[i, i] for i in range(last)])),
            "worst_drop": float(max(drops)),
            "max_forgetting": float(max(forgetting)),
            "fit_s": self.fit_s,
            "cpu_s": self.cpu_s,
            "refusals": float(self.refusals),
            # steps at which this model sequence would not have passed the gate
            "over_tolerance": float(
                sum(
                    any(acc[t - 1, i] - acc[t, i] > tolerance + 1e-12 for i in range(t))
                    for t in range(1, len(acc))
                )
            ),
            "replay_s": self.replay_s,
        }


def rotate(x: np.ndarray) -> np.ndarray:
    """Rotate flattened 8x8 images by 90 degrees."""
    return np.rot90(x.reshape(-1, 8, 8), k=1, axes=(1, 2)).reshape(len(x), -1)


def make_stream(seed: int, holdout: float) -> list[Window]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    stream = []
    for w, rows in enumerate(np.array_split(np.arange(len(y)), WINDOWS)):
        xw = rotate(x[rows]) if w >= SHIFT_AT else x[rows]
        x_tr, x_te, y_tr, y_te, r_tr, _ = train_test_split(
            xw, y[rows], rows, test_size=holdout, random_state=seed, stratify=y[rows]
        )
        ids = [f"w{w + 1}-{r:04d}" for r in r_tr]
        stream.append(Window(f"window {w + 1}", x_tr, y_tr, ids, x_te, y_te))
    return stream


def new_model(seed: int, args: argparse.Namespace) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        alpha=1e-3,
        max_iter=args.max_iter,
        random_state=seed,
    )


def accuracy(model: Any, window: Window) -> float:
    return float(np.mean(model.predict(window.x_test) == window.y_test))


class Clock:
    """Training time: wall (``perf_counter``) and this process's CPU time, summed."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def retrain(stream: list[Window], seed: int, args: argparse.Namespace, everything: bool) -> Trace:
    """(a) or (b): a new model after every window, on the newest window or on all so far."""
    acc = np.full((WINDOWS, WINDOWS), np.nan)
    clock = Clock()
    for t in range(WINDOWS):
        part = stream[: t + 1] if everything else [stream[t]]
        model = new_model(seed, args)
        x = np.vstack([w.x_train for w in part])
        y = np.concatenate([w.y_train for w in part])
        with clock:
            model.fit(x, y)
        for i in range(t + 1):
            acc[t, i] = accuracy(model, stream[i])
    return Trace(acc, clock.wall, clock.cpu)


def continual(stream: list[Window], seed: int, args: argparse.Namespace) -> Trace:
    """(c): replay memory + warm start + the no-forgetting gate."""
    gate = parse_gate(f"no past window loses more than {args.tolerance} accuracy")
    acc = np.full((WINDOWS, WINDOWS), np.nan)
    current = new_model(seed, args)
    clock = Clock()
    with clock:
        current.fit(stream[0].x_train, stream[0].y_train)
    acc[0, 0] = accuracy(current, stream[0])
    lineage = current  # what the next candidate starts from
    classes = np.arange(10)
    refusals, replay_s, details = 0, 0.0, []
    for t in range(1, WINDOWS):
        new = stream[t]
        start = time.perf_counter()
        memory = replay_sample([w.frame() for w in stream[:t]], args.replay, args.mix, seed)
        replay_s += time.perf_counter() - start
        x = np.vstack([new.x_train, memory.drop(columns=["label", "request_id"]).to_numpy()])
        y = np.concatenate([new.y_train, memory["label"].to_numpy()])
        candidate = copy.deepcopy(lineage)
        with clock:
            for _ in range(args.epochs):  # one partial_fit call is one epoch over the rows
                candidate.partial_fit(x, y, classes=classes)
        cand = {w.name: accuracy(candidate, w) for w in stream[:t]}
        champ = {w.name: accuracy(current, w) for w in stream[:t]}
        verdict = check_gates(
            [gate],
            {"accuracy": accuracy(candidate, new)},
            {"accuracy": accuracy(current, new)},
            windows={n: ({"accuracy": cand[n]}, {"accuracy": champ[n]}) for n in cand},
        )
        # the benchmark's own reading of the rule must agree with mlcd's gate
        own = all(cand[n] >= champ[n] - args.tolerance - 1e-12 for n in cand)
        assert own == verdict.passed, (own, verdict.results[0].detail)
        details.append(
            f"window {t + 1}: {'accepted' if verdict.passed else 'REFUSED'}, "
            f"{verdict.results[0].detail}"
        )
        if verdict.passed:
            current = lineage = candidate
        else:
            refusals += 1
            if args.warm_from == "candidate":
                lineage = candidate
        for i in range(t + 1):
            acc[t, i] = accuracy(current, stream[i])
    return Trace(acc, clock.wall, clock.cpu, refusals, replay_s, details)


def strategy(key: str, stream: list[Window], seed: int, args: argparse.Namespace) -> Trace:
    if key == "c":
        return continual(stream, seed, args)
    return retrain(stream, seed, args, everything=key == "b")


def run(args: argparse.Namespace) -> dict[str, Any]:
    per_rep: dict[str, list[dict[str, float]]] = {k: [] for k in STRATEGIES}
    matrices: dict[str, list[list[list[float]]]] = {k: [] for k in STRATEGIES}
    details: list[list[str]] = []
    for rep in range(args.reps):
        seed = args.seed + rep
        stream = make_stream(seed, args.holdout)
        order = list(STRATEGIES)[rep % 3 :] + list(STRATEGIES)[: rep % 3]  # spread the load
        done = {key: strategy(key, stream, seed, args) for key in order}
        traces = {key: done[key] for key in STRATEGIES}
        for key, trace in traces.items():
            per_rep[key].append(trace.summary(args.tolerance))
            matrices[key].append(np.round(trace.acc, 4).tolist())
        details.append(traces["c"].gate_details)
        if args.verbose:
            line = ", ".join(
                f"{k}: avg {per_rep[k][-1]['avg_acc']:.3f} in {per_rep[k][-1]['fit_s']:.2f} s"
                for k in STRATEGIES
            )
            print(f"rep {rep + 1}/{args.reps} (seed {seed}): {line}", file=sys.stderr)
            for text in traces["c"].gate_details:
                print(f"  {text}", file=sys.stderr)
    medians = {
        key: {name: median([r[name] for r in rows]) for name in rows[0]}
        for key, rows in per_rep.items()
    }
    means = {
        key: {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}
        for key, rows in per_rep.items()
    }
    worst_c = max(r["worst_drop"] for r in per_rep["c"])
    within = sum(
        rc["avg_acc"] >= rb["avg_acc"] - 0.01
        for rb, rc in zip(per_rep["b"], per_rep["c"], strict=True)
    )
    b, c = medians["b"], medians["c"]
    aims = {
        "accuracy_within_1_point_of_b": c["avg_acc"] >= b["avg_acc"] - 0.01,
        "at_most_half_of_b_training_time": c["fit_s"] <= 0.5 * b["fit_s"],
        "no_window_drops_more_than_tolerance": worst_c <= args.tolerance + 1e-12,
    }
    return {
        "dataset": "sklearn load_digits (1,797 rows), 6 windows, windows 4-6 rotated 90 degrees",
        "model": f"MLPClassifier(hidden_layer_sizes=({args.hidden},), alpha=1e-3) for all three",
        "config": {
            k: getattr(args, k)
            for k in (
                "reps",
                "seed",
                "holdout",
                "replay",
                "mix",
                "epochs",
                "tolerance",
                "warm_from",
                "hidden",
                "max_iter",
                "threads",
            )
        },
        "medians": medians,
        "means": means,
        "worst_drop_c_all_reps": worst_c,
        "max_forgetting_c_all_reps": max(r["max_forgetting"] for r in per_rep["c"]),
        "reps_c_within_1_point": within,
        "aims": aims,
        "per_rep": per_rep,
        "accuracy_matrices": matrices,
        "gate": details,
    }


def print_table(result: dict[str, Any]) -> None:
    config, medians, per_rep = result["config"], result["medians"], result["per_rep"]
    print(
        f"\n{result['dataset']}; {result['model']}; held out {config['holdout']:.0%} per "
        f"window; (c) replay {config['replay']} rows ({config['mix']}), {config['epochs']} "
        f"epochs from the {config['warm_from']}, gate tolerance {config['tolerance']}; "
        f"medians of {config['reps']} repetition(s), seeds {config['seed']} to "
        f"{config['seed'] + config['reps'] - 1}\n"
    )
    print(
        "| strategy | avg acc (windows seen) | final acc (all 6) | BWT | worst drop "
        "| max forgetting | training wall (s) | training CPU (s) | gate refusals |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in STRATEGIES.items():
        m = medians[key]
        if key == "c":
            gate = f"{m['refusals']:g} of {WINDOWS - 1}"
        else:
            gate = f"({m['over_tolerance']:g} would be)"
        print(
            f"| {label} | {m['avg_acc']:.4f} | {m['final_acc']:.4f} | {m['bwt']:+.4f} "
            f"| {m['worst_drop']:.4f} | {m['max_forgetting']:.4f} | {m['fit_s']:.2f} "
            f"| {m['cpu_s']:.2f} | {gate} |"
        )
    b, c = medians["b"], medians["c"]
    aims = result["aims"]
    verdict = {True: "holds", False: "MISSED"}
    print()
    print(
        f"aim: (c) within 1 point of (b) in average accuracy (medians): {c['avg_acc']:.4f} vs "
        f"{b['avg_acc']:.4f} ({(c['avg_acc'] - b['avg_acc']) * 100:+.2f} points) -> "
        f"{verdict[aims['accuracy_within_1_point_of_b']]}"
    )
    print(
        f"aim: (c) at most half of (b)'s training time (medians, wall): {c['fit_s']:.2f} s vs "
        f"{b['fit_s']:.2f} s ({c['fit_s'] / b['fit_s']:.2f}x; CPU "
        f"{c['cpu_s'] / b['cpu_s']:.2f}x) -> {verdict[aims['at_most_half_of_b_training_time']]}"
    )
    print(
        f"aim: no window of (c) ever drops more than {config['tolerance']} from one model to "
        f"the next (worst over all repetitions: {result['worst_drop_c_all_reps']:.4f}; "
        f"largest fall below a window's best: {result['max_forgetting_c_all_reps']:.4f}) -> "
        f"{verdict[aims['no_window_drops_more_than_tolerance']]}"
    )
    within = result["reps_c_within_1_point"]
    print(
        f"per repetition: (c) within 1 point of (b) in {within} of {config['reps']}; "
        "average accuracy (b) / (c):"
    )
    for rep, (rb, rc) in enumerate(zip(per_rep["b"], per_rep["c"], strict=True)):
        print(
            f"  seed {config['seed'] + rep}: {rb['avg_acc']:.4f} / {rc['avg_acc']:.4f}, "
            f"(c) refused {rc['refusals']:g}"
        )
    print(
        f"means over repetitions: (b) {result['means']['b']['avg_acc']:.4f}, "
        f"(c) {result['means']['c']['avg_acc']:.4f}; (c)'s replay sampling "
        f"(replay_sample, not in the training time): {c['replay_s']:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions, one seed each")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first repetition")
    parser.add_argument("--holdout", type=float, default=0.4, help="held-out share per window")
    parser.add_argument("--replay", type=int, default=600, help="(c) replay memory rows")
    parser.add_argument("--mix", choices=("uniform", "per_window"), default="per_window")
    parser.add_argument("--epochs", type=int, default=60, help="(c) epochs per warm start")
    parser.add_argument(
        "--warm-from",
        choices=("champion", "candidate"),
        default="champion",
        help="(c) warm start from the served model or from the newest candidate, even refused",
    )
    parser.add_argument("--tolerance", type=float, default=0.02, help="no-forgetting gate")
    parser.add_argument("--hidden", type=int, default=256, help="hidden units")
    parser.add_argument("--max-iter", type=int, default=200, help="epochs of a fit from scratch")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (timing)")
    parser.add_argument("--quick", action="store_true", help="one repetition, a smoke test")
    parser.add_argument("--json", action="store_true", help="one JSON line, no table")
    parser.add_argument("--verbose", action="store_true", help="per repetition and gate lines")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    with threadpool_limits(limits=args.threads):
        result = run(args)
    if args.json:
        report("continual", **result)
    else:
        print_table(result)


if __name__ == "__main__":
    main()
