"""The demo behind ``make demo``: the churn example through the whole lifecycle, one narrated step at a time.

Every step drives the real CLI (``python -m mlcd.cli.main ...``) in a fresh copy of
``examples/churn`` under ``.demo/`` (recreated each time), checks what it did, and says so:

1. data and training: ``mlcd run``, then again from a fresh checkout (all restored from cache);
2. evaluation: the first version against no champion, a weaker one against the champion;
3. registry: the first version promoted to ``champion`` through the gates;
4. serving: ``mlcd serve churn@champion --canary challenger:25`` in the background, with a
   thread sending single-row requests at a steady rate for the rest of the demo;
5. monitoring: the market shifts, the traffic drifts, ``mlcd monitor`` flags it;
6. continuous training: ``mlcd watch`` retrains on the labelled production traffic (the
   server's log joined with the outcomes the customer team sends back), gates the new version
   on the newest data and on every earlier test set (no forgetting), canaries it, makes it
   champion; the server swaps versions without failing a request.

It ends with a summary (also written to ``.demo/summary.json``) and stops everything it
started, also when a step fails or on Ctrl-C. Exit code 0 when every step succeeded, 1 when
one saw something else than what it promises (the reason is printed), 130 when interrupted.

The machinery (running the CLI, background processes, the traffic thread) is in
``demo_kit.py`` beside this file; the example's own simulator (``src/customers.py``) supplies
the customers the traffic plays.

A demo can also run in parts, in the same working folder: ``--until N`` stops after step N
(and keeps what the steps told each other in ``demo-state.json``), ``--from N`` goes on from
there. ``--until 7`` prepares the project (data, training, evaluation, registry) once;
``--from 8`` then runs the live part (serving, traffic, drift, retraining) on it, on a copy of
the folder as often as you like. The live part runs in one go: it starts at step 8 at the latest.

Usage: python examples/demo.py [--workdir DIR] [--small] [--from N] [--until N] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo_kit import FULL, MODEL, SMALL, Background, Demo, DemoFailed, Traffic, say, wait_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "churn"


def _outcomes(document: dict[str, Any]) -> dict[str, str]:
    return {s["stage"]: s["outcome"] for s in document["stages"]}


def _gate_lines(results: list[dict[str, Any]]) -> list[str]:
    return [
        f"{'pass' if r['passed'] else 'FAIL'}  {r['expression']}: {r.get('note') or r['detail']}"
        for r in results
    ]


def _set_yaml(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise DemoFailed(f"{path.name} has no '{old}' to change")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# ---------------------------------------------------------------------------------- steps
def setup_project(demo: Demo) -> None:
    """Copy the churn example into a fresh folder and commit it to a new git repository."""
    if demo.work.exists():
        shutil.rmtree(demo.work)
    shutil.copytree(EXAMPLE, demo.work, ignore=shutil.ignore_patterns(".mlcd", "__pycache__"))
    if demo.size is SMALL:
        _set_yaml(demo.work / "params.yaml", "n_customers: 6000", f"n_customers: {SMALL.customers}")
        _set_yaml(
            demo.work / "mlcd.yaml", "canary_window: 15s", f"canary_window: {SMALL.canary_window}"
        )
    demo.git("init", "-q", "-b", "main")
    demo.git("add", "-A")
    demo.git("commit", "-q", "-m", "churn example")
    warehouse = subprocess.run(
        [sys.executable, "src/warehouse.py"], cwd=demo.work, env=demo.env, capture_output=True,
        text=True,
    )  # fmt: skip
    if warehouse.returncode != 0:
        raise DemoFailed(f"filling the warehouse failed:\n{warehouse.stderr}")
    say(f"{warehouse.stderr.strip()} (outside git: a database the pipeline reads with sql:)")
    stages = demo.mlcd("dag").stdout.strip().splitlines()
    say(f"project in {demo.work}, committed; pipeline:")
    for line in stages:
        say(f"  {line}")


def first_run(demo: Demo) -> None:
    """Run the whole pipeline: every stage executes, the run is recorded, the model registered."""
    started = time.monotonic()
    document = demo.mlcd_json("run")
    elapsed = time.monotonic() - started
    outcomes = _outcomes(document)
    if set(outcomes.values()) != {"ran"}:
        raise DemoFailed(f"expected every stage to run the first time, got {outcomes}")
    registered = {r["model"]: r for r in document.get("registered") or []}
    if registered.get(MODEL, {}).get("version") != 1:
        raise DemoFailed(f"expected the run to register {MODEL} v1, got {registered}")
    lock = (demo.work / "mlcd.lock").read_text(encoding="utf-8")
    metrics = json.loads((demo.work / "metrics" / "eval.json").read_text(encoding="utf-8"))
    demo.facts["first_run_s"] = elapsed
    demo.facts["run_id"] = document["run_id"]
    demo.facts["first_version"] = 1
    demo.git(
        "add", "mlcd.lock", "metrics", "plots", ".gitignore", "data/.gitignore", "models/.gitignore"
    )
    demo.git("commit", "-q", "-m", "first pipeline run")
    say(f"{len(outcomes)} stages ran in {elapsed:.1f}s (run {document['run_id'][:12]})")
    say(f"test metrics: roc_auc={metrics['roc_auc']}, f1={metrics['f1']}")
    say(f"registered {MODEL} v1 with a reference profile of its training data (for monitoring)")
    say(f"mlcd.lock ({len(lock.splitlines())} lines) committed with the metrics")


def fresh_checkout(demo: Demo) -> None:
    """Delete every output, as in a fresh clone: the second run restores them all from cache."""
    demo.git(
        "clean", "-q", "-fdX", "-e", "!.mlcd", "-e", "!.mlcd/**", "-e", "!warehouse/shop.db"
    )  # the warehouse is not an output: a clone reaches the same database
    missing = [
        p
        for p in ("data/prepared", "data/features", "models/churn")
        if not (demo.work / p).exists()
    ]
    say(f"outputs removed: {', '.join(missing)}")
    status = demo.mlcd_json("status")
    stale = [s["stage"] for s in status["stages"] if s["status"] == "stale"]
    say(f"'mlcd status' finds {len(stale)} stale stage(s): {', '.join(stale)}")
    started = time.monotonic()
    document = demo.mlcd_json("run")
    elapsed = time.monotonic() - started
    outcomes = _outcomes(document)
    if "ran" in outcomes.values() or set(outcomes.values()) - {"cached", "skipped"}:
        raise DemoFailed(
            f"expected the second run to restore everything from cache, got {outcomes}"
        )
    restored = [name for name, outcome in outcomes.items() if outcome == "cached"]
    say(
        f"second run: {len(restored)} stage(s) restored from cache, none executed, {elapsed:.1f}s "
        f"(first run {demo.facts['first_run_s']:.1f}s)"
    )


def nothing_to_do(demo: Demo) -> None:
    """Run again with nothing changed: nothing runs, nothing is recorded, in milliseconds."""
    started = time.monotonic()
    document = demo.mlcd_json("run")
    elapsed = time.monotonic() - started
    if document["run_id"] is not None or set(_outcomes(document).values()) != {"skipped"}:
        raise DemoFailed(f"expected a no-op, got {_outcomes(document)}")
    if demo.git("status", "--porcelain").strip():
        raise DemoFailed(
            "the work tree should be clean: outputs are git-ignored, mlcd.lock committed"
        )
    say(
        f"up to date: nothing ran ({elapsed * 1000:.0f} ms including Python start-up); git tree clean"
    )


def evaluate_first(demo: Demo) -> None:
    """Evaluate v1 against the champion: there is none yet, so only absolute gates and budgets bite."""
    folder = demo.work / "reports" / "evaluate-v1"
    report = demo.mlcd_json(
        "evaluate", MODEL, "--candidate", "1", "--report-dir", str(folder), quiet=True
    )
    if not report["passed"] or report["champion"] is not None:
        raise DemoFailed(f"expected v1 to pass with no champion to compare with: {report}")
    metrics = report["candidate"]["metrics"]
    say(
        f"v1 on {report['data']['rows']} held-out rows: roc_auc={metrics['roc_auc']:.4f} "
        f"f1={metrics['f1']:.4f} p99 latency={metrics['latency_p99_ms']:.1f} ms "
        f"size={metrics['size_mb']:.2f} MB"
    )
    for line in _gate_lines(report["verdict"]["results"]):
        say(f"  {line}")
    demo.reports["evaluate v1"] = str(folder / "report.html")
    demo.facts["gates_v1"] = report["verdict"]


def promote_first(demo: Demo) -> None:
    """Promote v1 to champion through the gates of mlcd.yaml (the move is an audit event)."""
    result = demo.mlcd_json("models", "promote", MODEL, "1", "--alias", "champion", quiet=True)
    if not result["moved"] or result["version"] != 1 or not result["verdict"]["passed"]:
        raise DemoFailed(f"expected v1 to become champion: {result}")
    shown = demo.mlcd_json("models", "show", MODEL, quiet=True)
    if shown["aliases"].get("champion") != 1:
        raise DemoFailed(f"champion should point at v1: {shown['aliases']}")
    say(
        f"churn@champion -> v1 ({result['verdict']['alias']} gates passed; report stored by digest)"
    )


def weaker_candidate(demo: Demo) -> None:
    """A change that makes a weaker model: scored against the champion, the gates refuse it."""
    params = demo.work / "params.yaml"
    _set_yaml(params, "max_iter: 150", "max_iter: 5")
    say("params.yaml: train.max_iter 150 -> 5 (faster training...)")
    document = demo.mlcd_json("run")
    registered = {r["model"]: r for r in document.get("registered") or []}
    version = registered.get(MODEL, {}).get("version")
    if _outcomes(document).get("train") != "ran" or not version or version == 1:
        raise DemoFailed(f"expected train to run and register a new version: {document}")
    folder = demo.work / "reports" / f"evaluate-v{version}"
    report = demo.mlcd_json(
        "evaluate",
        MODEL,
        "--candidate",
        str(version),
        "--report-dir",
        str(folder),
        expect=1,
        quiet=True,
    )
    failed = [r for r in report["verdict"]["results"] if not r["passed"]]
    if report["passed"] or not failed:
        raise DemoFailed(f"expected the gates to refuse v{version}: {report['verdict']}")
    delta = report["deltas"]["roc_auc"]
    say(
        f"v{version} against champion v1: roc_auc {delta['delta']:+.4f} "
        f"(95% interval {delta['low']:+.4f} .. {delta['high']:+.4f}); "
        f"'mlcd evaluate' exits 1, {len(failed)} gate(s) failed:"
    )
    for line in _gate_lines(failed):
        say(f"  {line}")
    demo.reports[f"evaluate v{version} (refused)"] = str(folder / "report.html")
    demo.facts["refused_version"] = version
    demo.facts[f"gates_v{version}"] = report["verdict"]
    demo.git("checkout", "--", "params.yaml")
    document = demo.mlcd_json("run")
    outcomes = _outcomes(document)
    if outcomes.get("train") != "cached":
        raise DemoFailed(f"expected the revert to restore v1's training from cache: {outcomes}")
    say("params.yaml reverted: 'mlcd run' restores v1's model from the run cache, trains nothing")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(demo: Demo) -> None:
    """Serve churn@champion on 127.0.0.1 in the background, with 25% canary for churn@challenger."""
    import httpx

    port = _free_port()
    server = demo.start(
        "serve",
        "serve",
        f"{MODEL}@champion",
        "--canary",
        "challenger:25",
        "--port",
        str(port),
        "--log-level",
        "warning",
    )
    url = f"http://127.0.0.1:{port}"
    say(f"{url} starting (pid {server.process.pid}); log in {server.log}")

    def ready() -> bool:
        if not server.alive:
            raise DemoFailed(
                f"mlcd serve exited with {server.process.returncode}:\n{server.tail()}"
            )
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    started = time.monotonic()
    wait_for("the server to be ready", ready, timeout=60)
    info = httpx.get(f"{url}/v1/models/{MODEL}", timeout=5).json()
    primary, canary = info["primary"], info["canary"]
    if primary["version"] != 1:
        raise DemoFailed(f"expected the server to load churn@champion = v1: {info}")
    demo.facts["url"] = url
    say(f"{url} ready in {time.monotonic() - started:.1f}s")
    say(
        f"primary: v{primary['version']}, following {primary['follows']}; canary: "
        f"{canary['percent']:.0f}% to {canary['follows']} once it is set (now: "
        f"{'v' + str(canary['version']) if canary['version'] else 'not set'}); "
        "both checked every second"
    )


def _pools(demo: Demo) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """Rows of customers per market, from the example's own simulator (another seed than
    training), and whether each one churned (what the customer team reports back later)."""
    sys.path.insert(0, str(demo.work / "src"))
    try:
        import customers  # the example's simulated customer base
        import numpy as np
    finally:
        sys.path.pop(0)
    pools, labels = {}, {}
    for market in customers.MARKETS:
        frame = customers.generate(2000, np.random.default_rng(7), market)
        labels[market] = [int(v) for v in frame["churned"]]
        frame = frame.drop(columns=["customer_id", "churned"])
        pools[market] = json.loads(frame.to_json(orient="records"))
    return pools, labels


def send_traffic(demo: Demo) -> None:
    """Send live traffic, one customer per request at a steady rate, and their outcomes as feedback."""
    token = demo.mlcd_json("tokens", "create", "customer-team", "--role", "feedback", quiet=True)
    pools, labels = _pools(demo)
    traffic = Traffic(demo.facts["url"], pools, demo.size.rate, labels, token["token"])
    demo.traffic = traffic
    traffic.start()
    wait_for(
        "calm traffic",
        lambda: traffic.counts()["sent"] >= demo.size.rate * demo.size.calm_s,
        timeout=demo.size.calm_s * 4 + 20,
    )
    counts = traffic.counts()
    if counts["failed"] or counts["feedback_failures"]:
        raise DemoFailed(
            f"requests failed before anything changed: {counts['failures']} "
            f"{counts['feedback_failures']}"
        )
    say(
        f"{counts['answered']} requests answered at {demo.size.rate:.0f}/s, none failed; "
        f"by version: {counts['by_version']}"
    )
    say(
        f"the customer team sends each outcome back (POST /v1/feedback, token 'customer-team', "
        f"role feedback): {sum(counts['labelled_by_market'].values())} labelled so far"
    )


def inject_drift(demo: Demo) -> None:
    """The market shifts (a competitor's fibre offer): traffic drifts, and 'mlcd monitor' flags it."""
    assert demo.traffic is not None
    traffic = demo.traffic
    # The world changes in one go: live customers and the warehouse the pipeline exports from.
    (demo.work / "warehouse" / "market.yaml").write_text("market: price_war\n", encoding="utf-8")
    traffic.market = "price_war"
    say("market -> price_war: newer customers, dearer fibre plans, more support calls")
    before = traffic.counts()["labelled_by_market"].get("price_war", 0)
    wait_for(
        f"{demo.size.drift_rows} drifted requests, answered and labelled",
        lambda: (
            traffic.counts()["labelled_by_market"].get("price_war", 0)
            >= before + demo.size.drift_rows
        ),
        timeout=demo.size.drift_rows / demo.size.rate * 4 + 30,
    )
    folder = demo.work / "reports" / "monitor"

    def flagged() -> dict[str, Any] | None:
        # The server writes its prediction log every second: the newest rows may lag a little.
        report: dict[str, Any] = demo.mlcd_json(
            "monitor",
            f"{MODEL}@champion",
            "--last",
            str(demo.size.drift_rows),
            "--report-dir",
            str(folder),
            "--no-alert",
            expect=(0, 1),
            quiet=True,
        )
        return report if report["drift"]["dataset_drift"] else None

    report = wait_for("'mlcd monitor' to flag the drift", flagged, timeout=60, every=1)
    drift = report["drift"]
    if not report["failed"]:
        raise DemoFailed(f"'mlcd monitor' found drift but did not fail: {report['failures']}")
    scores = {
        f["name"]: f"{f['method']} {f['score']:.3g}" for f in drift["features"] if f["drifted"]
    }
    say(
        f"'mlcd monitor churn@champion --last {demo.size.drift_rows}' exits 1: "
        f"{len(drift['drifted'])} of {drift['tested']} features drifted ({drift['share']:.0%})"
    )
    for name, score in scores.items():
        say(f"  {name}: {score}")
    for failure in report["failures"][1:]:
        say(f"  also: {failure}")
    contract = report.get("contract") or {}
    broken = {k: v for k, v in (contract.get("violations") or {}).items() if v}
    if broken:
        say(
            f"  data contract '{contract['name']}' of the training data, broken in the window: "
            + ", ".join(f"{k} {v} row(s)" for k, v in sorted(broken.items()))
            + " (warn-only rules: answered, counted)"
        )
    demo.reports["monitor (drift)"] = str(folder / "report.html")
    demo.facts["drift"] = {
        "contract_violations": broken,
        "detected": True,
        "share": drift["share"],
        "drifted": drift["drifted"],
        "tested": drift["tested"],
        "monitor_exit": 1,
        "failures": report["failures"],
    }


def _passes(watch: Background) -> list[dict[str, Any]]:
    out = []
    for line in list(watch.lines):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def retrain_on_drift(demo: Demo) -> None:
    """'mlcd watch' retrains on labelled traffic, gates, canaries and promotes; the server swaps live."""
    assert demo.traffic is not None
    traffic = demo.traffic
    started = time.monotonic()
    watch = demo.start("watch", "watch", "--interval", "2", "--json")
    say(f"'mlcd watch --interval 2' started (pid {watch.process.pid}); log in {watch.log}")

    def first(kind: str) -> Callable[[], Any]:
        def check() -> Any:
            if not watch.alive:
                raise DemoFailed(
                    f"mlcd watch exited with {watch.process.returncode}:\n{watch.tail()}"
                )
            for report in _passes(watch):
                for item in report.get(kind, []):
                    if kind == "retrains" or item.get("action") not in ("none", "waiting"):
                        return item
            return None

        return check

    fired = wait_for("the drift trigger", lambda: _fired(watch), timeout=90)
    say(f"trigger fired: {fired}")
    outcome = wait_for("the retrain to finish", first("retrains"), timeout=300)
    for line in _retrain_lines(watch):
        say(f"  {line}")
    if outcome["status"] != "canary":
        raise DemoFailed(
            f"expected the retrained version to pass its gates and go to canary, got "
            f"{outcome['status']}: {outcome['reason']}\n{watch.tail()}"
        )
    version = int(outcome["version"])
    say(
        f"retrain {outcome['retrain_id']} done {time.monotonic() - started:.0f}s after the watch "
        f"started: v{version} registered, gated against champion v1 on the fresh test split:"
    )
    for line in _gate_lines(outcome["gates"]):
        say(f"  {line}")
    schema = json.loads((demo.work / "data" / "features" / "schema.json").read_text("utf-8"))
    windows = demo.mlcd_json("data", "windows", MODEL, quiet=True)
    trained = [w for w in windows if w["role"] == "train"]
    say(
        f"trained on the labelled production traffic: window {len(trained)} "
        f"({trained[-1]['rows'] if trained else 0} new labelled rows: {schema['production']['train']} "
        f"to train, {schema['production']['test']} held out as the newest test data) plus the "
        f"warehouse export; the no-forgetting gate also scored it on "
        f"{sum(1 for w in windows if w['role'] == 'eval') - 1} earlier test set(s)"
    )
    demo.facts["production_rows"] = schema["production"]
    demo.facts["retrain"] = {k: outcome[k] for k in ("retrain_id", "run_id", "status", "reason")}
    demo.facts["retrained_version"] = version
    demo.facts["gates_retrained"] = outcome["gates"]
    demo.reports["retrain gates"] = str(Path(outcome["report_dir"]) / "report.html")
    say(f"v{version} is churn@challenger; canary window {demo.size.canary_window}")
    moved = time.monotonic()
    wait_for(f"v{version} to answer canary traffic", lambda: traffic.seen(version, "canary"), 60)
    say(
        f"the server sends v{version} canary traffic ({time.monotonic() - moved:.1f}s after the move)"
    )
    decision = wait_for("the canary's verdict", first("canaries"), timeout=180)
    if decision["action"] != "promoted":
        raise DemoFailed(
            f"expected the canary to become champion, got {decision['action']}: "
            f"{decision['reason']}\n{watch.tail()}"
        )
    canary_answers = traffic.counts()["by_version"].get(f"v{version} (canary)", 0)
    say(f"canary healthy ({canary_answers} requests answered by v{version}): {decision['reason']}")
    demo.reports["canary -> champion gates"] = str(
        demo.work / ".mlcd" / "reports" / "canary" / f"{MODEL}-v{version}" / "report.html"
    )
    wait_for(f"the server to swap to v{version}", lambda: traffic.seen(version, "primary"), 60)
    say(f"the server followed churn@champion: v{version} now answers as primary")
    watch.stop()  # the policy's work is done
    demo.background.remove(watch)
    time.sleep(demo.size.settle_s)  # a little more traffic on the new champion, then stop
    traffic.finish()
    counts = traffic.counts()
    demo.facts["traffic"] = counts
    shown = demo.mlcd_json("models", "show", MODEL, quiet=True)
    demo.facts["aliases"] = shown["aliases"]
    if counts["failed"]:
        raise DemoFailed(f"{counts['failed']} request(s) failed: {counts['failures']}")
    versions = {int(key.split()[0][1:]) for key in counts["by_version"]}
    if not {1, version} <= versions:
        raise DemoFailed(f"expected answers from v1 and v{version}: {counts['by_version']}")
    if shown["aliases"].get("champion") != version:
        raise DemoFailed(f"expected champion -> v{version}: {shown['aliases']}")
    say(
        f"traffic stopped: {counts['answered']} answered, {counts['failed']} failed "
        f"{counts['by_version']}; churn@champion -> v{version}"
    )


def _retrain_lines(watch: Background) -> list[str]:
    """What the retrain said in the watch's log: the refresh, each stage, the gating."""
    text = watch.log.read_text(encoding="utf-8", errors="replace").splitlines()
    keep = ("refreshing", "  stage ", "running the pipeline", "gating", "churn: registered")
    return [line.strip() for line in text if line.startswith(keep)]


def _fired(watch: Background) -> str | None:
    if not watch.alive:
        raise DemoFailed(f"mlcd watch exited with {watch.process.returncode}:\n{watch.tail()}")
    for report in _passes(watch):
        for results in report.get("triggers", {}).values():
            for result in results:
                if result["fired"]:
                    return f"{result['trigger']}: {result['reason']}"
    return None


def summary(demo: Demo) -> None:
    """Summarise: versions, gates, drift, traffic, the audit trail, where the reports are."""
    events = demo.mlcd_json("events", MODEL, "--limit", "200", quiet=True)
    kinds = Counter(e["kind"] for e in events)
    traffic = demo.facts["traffic"]
    document = {
        "ok": True,
        "size": "small" if demo.size is SMALL else "full",
        "wall_s": round(time.monotonic() - demo.facts["started"], 1),
        "workdir": str(demo.work),
        "versions": {
            "first": demo.facts["first_version"],
            "refused": demo.facts["refused_version"],
            "retrained": demo.facts["retrained_version"],
            "champion": demo.facts["aliases"].get("champion"),
        },
        "aliases": demo.facts["aliases"],
        "gates": {
            f"v{demo.facts['first_version']}": _verdict(demo.facts["gates_v1"]["results"]),
            f"v{demo.facts['refused_version']}": _verdict(
                demo.facts[f"gates_v{demo.facts['refused_version']}"]["results"]
            ),
            f"v{demo.facts['retrained_version']}": _verdict(demo.facts["gates_retrained"]),
        },
        "drift": demo.facts["drift"],
        "retrain": {**demo.facts["retrain"], "production_rows": demo.facts["production_rows"]},
        "requests": {
            "answered": traffic["answered"],
            "failed": traffic["failed"],
            "by_version": traffic["by_version"],
            "latency_ms": traffic["latency_ms"],
        },
        "events": dict(sorted(kinds.items())),
        "reports": demo.reports,
        "logs": demo.logs,
    }
    path = demo.work / "summary.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    v = document["versions"]
    say(
        f"versions: v{v['first']} first champion; v{v['refused']} refused by the gates; "
        f"v{v['retrained']} retrained on drift, now champion"
    )
    for name, verdict in document["gates"].items():
        say(
            f"gates {name}: {verdict['passed']}/{verdict['total']} passed"
            + (f" (failed: {', '.join(verdict['failed'])})" if verdict["failed"] else "")
        )
    d = document["drift"]
    say(
        f"drift: {len(d['drifted'])} of {d['tested']} features ({d['share']:.0%}): {', '.join(d['drifted'])}"
    )
    r = document["requests"]
    say(f"requests: {r['answered']} answered, {r['failed']} failed; {r['by_version']}")
    say(
        "latency seen by the client (p50 / p99 ms): "
        + ", ".join(f"{k} {ms['p50']} / {ms['p99']}" for k, ms in r["latency_ms"].items())
    )
    say(f"audit trail ('mlcd events {MODEL}'), {len(events)} events, oldest first:")
    for line in _timeline(events):
        say(f"  {line}")
    say("reports:")
    for name, report in demo.reports.items():
        say(f"  {name}: {report}")
    say(f"summary written to {path}")


def _timeline(events: list[dict[str, Any]]) -> list[str]:
    """The audit trail in a few columns: time since the first event, kind, version, alias, why."""
    if not events:
        return []
    start = events[-1]["at"]
    lines = []
    for event in reversed(events):
        if event["kind"] == "trigger.checked":  # the quiet checks; the demo shows the firing one
            continue
        version = "" if event["version"] is None else f"v{event['version']}"
        if event["from_version"]:  # a move shows where from; a deletion, what it pointed at
            version = f"v{event['from_version']}" + (f"->{version}" if version else "")
        reason = (event["reason"] or "").splitlines()[0] if event["reason"] else ""
        lines.append(
            f"+{event['at'] - start:5.1f}s  {event['kind']:<19}{version:<8}{event['alias'] or '':<11}"
            f"{reason[:72] + ('...' if len(reason) > 72 else '')}"
        )
    return lines


def _verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "passed": sum(1 for r in results if r["passed"]),
        "total": len(results),
        "failed": [r["expression"] for r in results if not r["passed"]],
    }


#: The demo, in order: (step of the lifecycle, function).
STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("1 data", setup_project),
    ("1-2 data, training", first_run),
    ("1 data", fresh_checkout),
    ("1 data", nothing_to_do),
    ("3 evaluation", evaluate_first),
    ("4 registry", promote_first),
    ("3 evaluation", weaker_candidate),
    ("4 deployment", serve),
    ("5 production", send_traffic),
    ("5 monitoring", inject_drift),
    ("6 continuous training", retrain_on_drift),
    ("summary", summary),
]


def _write_failure(demo: Demo, step: str, error: str) -> None:
    """A failed demo still leaves a summary.json (ok: false) saying where and why, for CI."""
    if demo.work.is_dir():
        document = {"ok": False, "failed_at": step, "error": error, "facts": demo.facts,
                    "reports": demo.reports, "logs": demo.logs}  # fmt: skip
        (demo.work / "summary.json").write_text(
            json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8"
        )


#: Where ``--until`` leaves what the steps so far told each other, for ``--from``.
STATE = "demo-state.json"
#: The live part (server, traffic, watch) runs in one process: a resumed demo starts at it at the latest.
LAST_START = next(i for i, (_, step) in enumerate(STEPS, 1) if step is serve)


def _save_state(demo: Demo, done: int) -> Path:
    """After ``--until``: the facts, reports and logs so far, paths relative to the folder."""

    def relative(paths: dict[str, str]) -> dict[str, str]:
        return {k: str(Path(v).relative_to(demo.work)) for k, v in paths.items()}

    facts = {k: v for k, v in demo.facts.items() if k != "started"}
    document = {"done": done, "size": "small" if demo.size is SMALL else "full", "facts": facts,
                "reports": relative(demo.reports), "logs": relative(demo.logs)}  # fmt: skip
    path = demo.work / STATE
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _load_state(demo: Demo, start: int) -> None:
    """For ``--from START``: what an earlier ``--until START-1`` in this folder left (consumed:
    the folder is again what the steps made of it)."""
    path = demo.work / STATE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoFailed(
            f"--from {start} goes on from an earlier run with --until {start - 1} in "
            f"{demo.work}: no {STATE} there ({exc})"
        ) from exc
    size = "small" if demo.size is SMALL else "full"
    if document["done"] != start - 1 or document["size"] != size:
        raise DemoFailed(
            f"--from {start} needs a {size} run stopped after step {start - 1}; {path} is from a "
            f"{document['size']} run stopped after step {document['done']}"
        )
    demo.facts.update(document["facts"])
    demo.reports.update({k: str(demo.work / v) for k, v in document["reports"].items()})
    demo.logs.update({k: str(demo.work / v) for k, v in document["logs"].items()})
    path.unlink()


def _checkpoint(demo: Demo, done: int, target: Path) -> None:
    """A copy of the folder after step ``done`` with its state, as ``--until done`` leaves it:
    copied beside ``target`` and renamed into place, so a copy that exists is whole."""
    if target.exists():
        say(f"checkpoint {target} exists: left as it is")
        return
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    state = _save_state(demo, done)
    try:
        shutil.copytree(demo.work, partial, symlinks=True)
    finally:
        state.unlink()
    partial.rename(target)
    say(f"checkpoint after step {done}: {target} (go on there with --from {done + 1})")


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run every step; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", type=Path, default=REPO / ".demo", help="recreated (unless --from)"
    )
    parser.add_argument(
        "--small", action="store_true", help="fewer rows and shorter windows (for CI)"
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=int,
        choices=range(1, LAST_START + 1),
        default=1,
        metavar="N",
        help=f"go on at step N (at most {LAST_START}) after a run with --until N-1 in --workdir",
    )
    parser.add_argument(
        "--until",
        type=int,
        choices=range(1, len(STEPS) + 1),
        default=len(STEPS),
        metavar="N",
        help=f"stop after step N; --from N+1 goes on from there (when N < {LAST_START})",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help=f"also leave a copy of the folder as it stands after step {LAST_START - 1} in DIR "
        f"(made once, whole or not at all): --from {LAST_START} --workdir DIR goes on there",
    )
    args = parser.parse_args(argv)
    if args.until < args.start:
        parser.error(f"--until {args.until} comes before --from {args.start}")
    demo = Demo(work=args.workdir.resolve(), size=SMALL if args.small else FULL)
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (Python installs its
    # handler only over the default disposition; a parent such as a test runner may ignore it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    total = len(STEPS)
    started = time.monotonic()
    try:
        if args.start > 1:
            try:
                _load_state(demo, args.start)
            except DemoFailed as exc:
                print(f"FAILED: {exc}", file=sys.stderr, flush=True)
                return 1
            print(f"==> going on at step {args.start} in {demo.work}", flush=True)
        demo.facts["started"] = started
        for index, (phase, step) in enumerate(STEPS, 1):
            if not args.start <= index <= args.until:
                continue
            title = (step.__doc__ or step.__name__).strip().splitlines()[0]
            print(f"==> [{index}/{total}] ({phase}) {title}", flush=True)
            step_started = time.monotonic()
            try:
                step(demo)
            except DemoFailed as exc:
                print(
                    f"FAILED at step {index} ({step.__name__}): {exc}", file=sys.stderr, flush=True
                )
                _write_failure(demo, f"step {index} ({step.__name__})", str(exc))
                return 1
            say(f"({time.monotonic() - step_started:.1f}s)")
            if args.checkpoint is not None and index == LAST_START - 1:
                _checkpoint(demo, index, args.checkpoint.resolve())
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what the demo started", file=sys.stderr, flush=True)
        return 130
    finally:
        demo.close()
    if args.until < total:
        print(f"==> stopped after step {args.until} as asked ({time.monotonic() - started:.0f}s)")
        if args.until < LAST_START:
            state = _save_state(demo, args.until)
            print(f"==> go on with --from {args.until + 1} (what the steps found so far: {state})")
        return 0
    print(f"==> demo complete in {time.monotonic() - started:.0f}s; explore it in {demo.work}")
    print(f"==> browse it: cd {demo.work} && mlcd ui   (then open http://127.0.0.1:5000/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
