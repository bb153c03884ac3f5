"""Queued experiments: mlcd against DVC 3 on the same 4-stage pipeline, in the same run.

Two identical git projects (one per tool), generated from one seed: ``data/raw.bin`` (256 MiB
of random bytes, tracked with ``mlcd data add`` / ``dvc add``) and four stages written as the
same Python scripts for both tools:

    prepare    raw.bin (256 MiB)      -> prepared.bin (128 MiB)
    featurize  prepared.bin           -> features.bin (32 MiB)
    train      features.bin, train.*  -> model.bin (1 MiB)
    evaluate   model.bin, features.bin, evaluate.threshold -> metrics.json

The baseline is run and committed (not timed). Then, timed: 8 experiments that differ only in
``evaluate.threshold`` are queued and run with 2 workers:

    mlcd exp run --queue -S evaluate.threshold=T   (x8)  +  mlcd exp start -j 2
    dvc exp run --queue -S evaluate.threshold=T    (x8)  +  dvc queue start -j 2, then waiting
        until the 8 experiments are done (their git refs under refs/exps/ appear, polled every
        0.2 s; 'dvc queue status' confirms afterwards)

Disk written: each tool's whole scenario runs under one measuring process that is a child
subreaper (``PR_SET_CHILD_SUBREAPER``), so every process it starts, DVC's detached queue
workers included, is reaped by it and its I/O lands in its ``/proc/self/io``: ``write_bytes``
(bytes sent to the storage layer) and ``cancelled_write_bytes`` (dirty pages dropped because a
file was deleted first, e.g. a temporary workspace). The wall time stops when the 8
experiments are done; the measuring process then waits for the stragglers (DVC's workers
exit after 10 s idle) before reading its counters. Also reported: how much the project folder
grew (``st_blocks``, hard-linked inodes counted once).

Every experiment's metrics are compared between the tools (same scripts, same params: same
numbers), so both did the same work.

A second scenario, ``grid``, queues the 8 in one command each: ``mlcd exp sweep --grid
evaluate.threshold=16,32,...,128 --parallel 2`` (queues and runs them) against
``dvc exp run --queue -S evaluate.threshold=16,32,...,128`` + ``dvc queue start -j 2``.

Usage: python benchmarks/bench_experiments.py [--quick] [--reps N] [--dir DIR] [--link MODE]
       [--scenario each|grid|both]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

MiB = 1024 * 1024
EXPERIMENTS = 8
WORKERS = 2
THRESHOLDS = [16 * (i + 1) for i in range(EXPERIMENTS)]  # 16, 32, ..., 128

SCRIPTS = {
    "src/prepare.py": """
        # prepared.bin: every other MiB of raw.bin, each byte rotated
        CHUNK = 1 << 20
        table = bytes((b + 1) % 256 for b in range(256))
        with open("data/raw.bin", "rb") as src, open("prepared.bin", "wb") as out:
            index = 0
            while chunk := src.read(CHUNK):
                if index % 2 == 0:
                    out.write(chunk.translate(table))
                index += 1
        """,
    "src/featurize.py": """
        # features.bin: every fourth MiB of prepared.bin
        CHUNK = 1 << 20
        with open("prepared.bin", "rb") as src, open("features.bin", "wb") as out:
            index = 0
            while chunk := src.read(CHUNK):
                if index % 4 == 0:
                    out.write(chunk)
                index += 1
        """,
    "src/train.py": """
        # model.bin: 1 MiB derived from the features and train.seed
        import hashlib
        import yaml
        seed = yaml.safe_load(open("params.yaml"))["train"]["seed"]
        digest = hashlib.blake2b(open("features.bin", "rb").read(), key=str(seed).encode())
        block = digest.digest()
        open("model.bin", "wb").write(block * ((1 << 20) // len(block)))
        """,
    "src/evaluate.py": """
        # metrics.json: shares of sampled feature bytes above evaluate.threshold
        import json
        import yaml
        threshold = yaml.safe_load(open("params.yaml"))["evaluate"]["threshold"]
        features = open("features.bin", "rb").read()
        model = open("model.bin", "rb").read()
        sample = features[::997]
        above = sum(1 for b in sample if b > threshold)
        agree = sum(1 for a, b in zip(sample, model) if (a > threshold) == (b > threshold))
        json.dump(
            {"above": above / len(sample), "agree": agree / min(len(sample), len(model))},
            open("metrics.json", "w"),
        )
        """,
}
PARAMS = "train:\n  seed: 7\nevaluate:\n  threshold: 100\n"
STAGES = [
    ("prepare", "python src/prepare.py", ["src/prepare.py", "data/raw.bin"], [], "prepared.bin"),
    (
        "featurize",
        "python src/featurize.py",
        ["src/featurize.py", "prepared.bin"],
        [],
        "features.bin",
    ),
    ("train", "python src/train.py", ["src/train.py", "features.bin"], ["train"], "model.bin"),
    (
        "evaluate",
        "python src/evaluate.py",
        ["src/evaluate.py", "features.bin", "model.bin"],
        ["evaluate"],
        None,
    ),
]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found: pip install -e '.[dev]' (DVC 3 is in the dev extra)")
    return found


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(
            f"'{' '.join(argv)}' failed ({result.returncode}) in {cwd}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def make_data(path: Path, mib: int) -> None:
    rng = random.Random(20261204)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for _ in range(mib // 16):
            handle.write(rng.randbytes(16 * MiB))


def _pipeline(tool: str) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for name, cmd, deps, params, out in STAGES:
        stage: dict[str, Any] = {"cmd": cmd, "deps": deps}
        if params:
            stage["params"] = params
        if out:
            stage["outs"] = [out]
        if name == "evaluate":
            stage["metrics"] = (
                [{"metrics.json": {"cache": False}}] if tool == "dvc" else ["metrics.json"]
            )
        stages[name] = stage
    return {"stages": stages}


def setup(tool: str, root: Path, data: Path, link: str, env: dict[str, str]) -> None:
    """A committed project whose baseline has run: what a user has before experimenting."""
    import yaml

    root.mkdir(parents=True)
    for relative, text in SCRIPTS.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    (root / "params.yaml").write_text(PARAMS)
    (root / "data").mkdir()
    shutil.copyfile(data, root / "data" / "raw.bin")
    run(["git", "init", "-q", "-b", "main"], root, env)
    if tool == "mlcd":
        config = _pipeline("mlcd")
        if link != "copy":
            config["cache"] = {"link": link}
        (root / "mlcd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (root / ".gitignore").write_text("/.mlcd/\n")
        run([_bin("mlcd"), "data", "add", "data/raw.bin"], root, env)
        run([_bin("mlcd"), "run"], root, env)
    else:
        run([_bin("dvc"), "init", "-q"], root, env)
        if link != "copy":
            run([_bin("dvc"), "config", "cache.type", link], root, env)
        (root / "dvc.yaml").write_text(yaml.safe_dump(_pipeline("dvc"), sort_keys=False))
        run([_bin("dvc"), "add", "-q", "data/raw.bin"], root, env)
        run([_bin("dvc"), "repro", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "baseline"], root, env)
    os.sync()


def disk_usage(root: Path) -> int:
    """Bytes allocated below ``root`` (``st_blocks``), each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            key = (info.st_dev, info.st_ino)
            if key not in seen:
                seen.add(key)
                total += info.st_blocks * 512
    return total


# ----------------------------------------------------------------- the measured scenario


def _dvc_done(root: Path, env: dict[str, str]) -> int:
    """How many experiments DVC has finished: refs/exps/<xx>/<rest of baseline>/<name>."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    return sum(1 for r in refs if len(r.split("/")) == 5 and not r.startswith("refs/exps/celery"))


def _dvc_failed(root: Path, env: dict[str, str]) -> bool:
    status = subprocess.run(
        [_bin("dvc"), "queue", "status"], cwd=root, env=env, capture_output=True, text=True
    ).stdout
    return "Failed" in status


def scenario(tool: str, root: Path, kind: str) -> dict[str, Any]:
    """Queue 8 experiments and run them with 2 workers; runs in the measuring process.

    ``kind`` is ``each`` (one queueing command per experiment) or ``grid`` (one command
    queues all 8: ``mlcd exp sweep --grid`` runs them too, ``dvc exp run --queue -S K=A,B,..``
    only queues them).
    """
    env = _env()
    start = time.perf_counter()
    values = ",".join(str(t) for t in THRESHOLDS)
    if kind == "grid" and tool == "mlcd":
        grid = f"evaluate.threshold={values}"
        run([_bin("mlcd"), "exp", "sweep", "--grid", grid, "--parallel", str(WORKERS)], root, env)
        return {"wall": time.perf_counter() - start, "queue": 0.0}
    if kind == "grid":
        run([_bin("dvc"), "exp", "run", "--queue", "-S", f"evaluate.threshold={values}"], root, env)
    else:
        for index, threshold in enumerate(THRESHOLDS):
            name = f"t{index}"
            setting = f"evaluate.threshold={threshold}"
            run([_bin(tool), "exp", "run", "--queue", "-S", setting, "-n", name], root, env)
    queued = time.perf_counter() - start
    if tool == "mlcd":
        run([_bin("mlcd"), "exp", "start", "-j", str(WORKERS)], root, env)
    else:
        run([_bin("dvc"), "queue", "start", "-j", str(WORKERS)], root, env)
        checked = time.perf_counter()
        while _dvc_done(root, env) < EXPERIMENTS:
            if time.perf_counter() - checked > 15:
                if _dvc_failed(root, env):
                    sys.exit(f"a DVC experiment failed: see 'dvc queue status' in {root}")
                checked = time.perf_counter()
            if time.perf_counter() - start > 3600:
                sys.exit("DVC's queue did not finish within an hour")
            time.sleep(0.2)
    return {"wall": time.perf_counter() - start, "queue": queued}


def measure(tool: str, root: Path, kind: str) -> None:
    """The measuring process: a child subreaper running ``scenario``, then reaping everything."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed: Linux is needed")
    result = scenario(tool, root, kind)
    deadline = time.monotonic() + 300
    while True:  # adopted orphans (DVC's detached workers) are reaped here, I/O and all
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                sys.exit("processes still running 5 minutes after the experiments finished")
            time.sleep(0.2)
    counters = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    result["write_bytes"] = int(counters["write_bytes"])
    result["cancelled_write_bytes"] = int(counters["cancelled_write_bytes"])
    sys.stdout.write(json.dumps(result) + "\n")


def metrics_of(tool: str, root: Path, env: dict[str, str]) -> dict[float, dict[str, float]]:
    """``{threshold: metrics}`` of every experiment, as the tool shows them."""
    found: dict[float, dict[str, float]] = {}
    if tool == "mlcd":
        shown = json.loads(run([_bin("mlcd"), "exp", "show", "--json"], root, env))
        for row in shown["experiments"]:
            if row["status"] != "finished":
                sys.exit(f"mlcd experiment {row['name']} is {row['status']}")
            threshold = float(row["params"]["evaluate.threshold"])
            found[threshold] = {k: float(v) for k, v in row["metrics"].items()}
    else:
        shown = json.loads(run([_bin("dvc"), "exp", "show", "--json"], root, env))
        for commit in shown:
            for exp in commit.get("experiments") or []:
                for revision in exp.get("revs") or []:
                    data = revision.get("data") or {}
                    params = data["params"]["params.yaml"]["data"]
                    metrics = data["metrics"]["metrics.json"]["data"]
                    found[float(params["evaluate"]["threshold"])] = {
                        k: float(v) for k, v in metrics.items()
                    }
    return found


def one_rep(
    tool: str, kind: str, base: Path, data: Path, link: str, env: dict[str, str]
) -> dict[str, Any]:
    root = base / f"{tool}-project"
    if root.exists():
        shutil.rmtree(root)
    setup(tool, root, data, link, env)
    before = disk_usage(root)
    done = subprocess.run(
        [sys.executable, __file__, "--measure", tool, "--scenario", kind, "--dir", str(root)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{tool} scenario failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["grew"] = disk_usage(root) - before
    result["metrics"] = metrics_of(tool, root, env)
    if len(result["metrics"]) != EXPERIMENTS:
        sys.exit(f"{tool}: {len(result['metrics'])} experiments found, not {EXPERIMENTS}")
    if tool == "dvc":
        status = run([_bin("dvc"), "queue", "status"], root, env)
        result["queue_status"] = status
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB of data, 1 repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (tools alternating)")
    parser.add_argument("--data-mib", type=int, default=256, help="size of data/raw.bin")
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the folders afterwards")
    parser.add_argument(
        "--link",
        choices=["copy", "hardlink"],
        default="copy",
        help="how both tools place cached files in workspaces (mlcd cache.link, dvc cache.type)",
    )
    parser.add_argument(
        "--scenario",
        choices=["each", "grid", "both"],
        default="both",
        help="each: one queueing command per experiment; grid: one command for all 8",
    )
    parser.add_argument("--measure", choices=["mlcd", "dvc"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.dir, args.scenario)
        return
    reps, mib = (1, 64) if args.quick else (args.reps, args.data_mib)
    kinds = ["each", "grid"] if args.scenario == "both" else [args.scenario]

    import compileall

    import mlcd as package

    compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)
    env = _env()
    dvc_version = run([_bin("dvc"), "--version"], Path.cwd(), env).strip()
    base = Path(tempfile.mkdtemp(prefix="mlcd-bench-exp-", dir=args.dir))
    try:
        data = base / "raw.bin"
        print(f"{mib} MiB of data in {base}; link mode {args.link}", file=sys.stderr)
        make_data(data, mib)
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for rep in range(reps):
            for kind in kinds:
                order = ["mlcd", "dvc"] if rep % 2 == 0 else ["dvc", "mlcd"]
                for tool in order:
                    last = one_rep(tool, kind, base, data, args.link, env)
                    results.setdefault((kind, tool), []).append(last)
                    print(
                        f"  rep {rep + 1}/{reps} {kind} {tool}: {last['wall']:.1f} s "
                        f"(queueing {last['queue']:.1f} s), "
                        f"wrote {last['write_bytes'] / MiB:.0f} MiB "
                        f"({last['cancelled_write_bytes'] / MiB:.0f} MiB cancelled), "
                        f"project grew {last['grew'] / MiB:.0f} MiB",
                        file=sys.stderr,
                    )
                mine = results[(kind, "mlcd")][-1]["metrics"]
                theirs = results[(kind, "dvc")][-1]["metrics"]
                if mine != theirs:
                    sys.exit(f"the tools disagree on the metrics:\nmlcd {mine}\ndvc  {theirs}")
        for kind in kinds:
            summary: dict[str, Any] = {}
            for tool in ("mlcd", "dvc"):
                runs = results[(kind, tool)]
                summary[tool] = {
                    "wall_s": median([r["wall"] for r in runs]),
                    "queue_s": median([r["queue"] for r in runs]),
                    "write_mib": median([r["write_bytes"] / MiB for r in runs]),
                    "cancelled_mib": median([r["cancelled_write_bytes"] / MiB for r in runs]),
                    "grew_mib": median([r["grew"] / MiB for r in runs]),
                    "walls": [round(r["wall"], 2) for r in runs],
                }
            report(
                "experiments",
                scenario=kind,
                dvc_version=dvc_version,
                data_mib=mib,
                link=args.link,
                reps=reps,
                experiments=EXPERIMENTS,
                workers=WORKERS,
                mlcd=summary["mlcd"],
                dvc=summary["dvc"],
                speedup=summary["dvc"]["wall_s"] / summary["mlcd"]["wall_s"],
            )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
