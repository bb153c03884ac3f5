"""The machinery of ``examples/demo.py``: the project it drives, its background processes, live traffic.

``Demo`` runs the real CLI in the demo's working folder; ``Background`` is a process the demo
started (``mlcd serve``, ``mlcd watch``) in a process group of its own, so stopping it stops its
children; ``Traffic`` is the thread that plays the customers, one request at a time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MODEL = "churn"


class DemoFailed(Exception):
    """A step saw something other than what the demo promises."""


@dataclass(frozen=True)
class Size:
    """How big and how long: the default run, or ``--small`` for CI."""

    customers: int
    rate: float  # requests per second the traffic thread sends
    calm_s: float  # traffic before the drift
    drift_rows: int  # drifted requests before 'mlcd monitor' looks (its --last)
    canary_window: str
    settle_s: float  # traffic on the new champion before it stops


FULL = Size(
    customers=6000, rate=30.0, calm_s=8.0, drift_rows=600, canary_window="15s", settle_s=2.0
)
# CI's run. Its traffic is what the retrain learns from and is gated on (the newest labelled
# rows are its test set): with fewer calm or drifted rows the retrained model's roc_auc fell
# below the champion's on them in one run of two, so they stay (120 calm, 400 drifted), sent
# twice as fast; the canary window and the wait after the swap, which no gate depends on, are
# short.
SMALL = Size(
    customers=2500, rate=60.0, calm_s=2.0, drift_rows=400, canary_window="5s", settle_s=0.5
)


def say(text: str) -> None:
    """One line of narration."""
    print(f"    {text}", flush=True)


# ------------------------------------------------------------------ background processes
class Background:
    """A process the demo started, in its own process group (so stopping it stops its children)."""

    def __init__(
        self, name: str, args: list[str], cwd: Path, env: dict[str, str], log: Path
    ) -> None:
        self.name = name
        self.log = log
        self._log: IO[str] = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # a process group of its own; Ctrl-C reaches only the demo
        )
        self._reader = threading.Thread(target=self._read, name=f"demo-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The end of its log (stderr), for error messages."""
        self._log.flush()
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(f"      | {line}" for line in text[-lines:])

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the group, wait, SIGKILL what is left. Returns the exit code."""
        if self.alive:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        self._reader.join(5)
        self._log.close()
        return self.process.returncode


# ------------------------------------------------------------------------------ traffic
class Traffic(threading.Thread):
    """Sends one single-row request at a time, at a steady rate, until stopped.

    Rows come from the same simulated customer base the example trains on (``src/customers.py``),
    from the market set in ``market``: switching it is how the demo injects drift. Every
    answer is counted by the version and role (primary or canary) that gave it. With
    ``labels`` and a feedback ``token``, the "customer team" sends each answered request's true
    outcome back (``POST /v1/feedback``, in batches): the labelled traffic a retrain learns from.
    """

    FEEDBACK_BATCH = 10

    def __init__(
        self,
        url: str,
        pools: dict[str, list[dict[str, Any]]],
        rate: float,
        labels: dict[str, list[Any]] | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.url = url
        self.pools = pools
        self.labels = labels or {}
        self.token = token
        self.pending: list[dict[str, Any]] = []
        self.labelled = Counter[str]()  # per market
        self.feedback_failures: list[str] = []
        self.interval = 1.0 / rate
        self.market = "baseline"
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.sent = Counter[str]()  # per market
        self.answered = 0
        self.failed = 0
        self.failures: list[str] = []
        self.by_answer = Counter[tuple[int, str]]()  # (version, role) -> requests
        self.latencies: dict[tuple[int, str], list[float]] = {}  # seen by the client, in ms

    def run(self) -> None:
        import httpx

        index = 0
        due = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self.halt.is_set():
                market = self.market
                pool = self.pools[market]
                position = index % len(pool)
                row = pool[position]
                index += 1
                sent_at = time.perf_counter()
                try:
                    response = client.post(f"/v1/models/{MODEL}/predict", json=[row])
                    outcome = (
                        (int(response.json()["version"]), str(response.json()["role"]))
                        if response.status_code == 200
                        else f"HTTP {response.status_code}: {response.text[:200]}"
                    )
                    if isinstance(outcome, tuple) and market in self.labels:
                        [request_id] = response.json()["request_ids"]
                        label = self.labels[market][position]
                        self.pending.append({"request_id": request_id, "label": label, "m": market})
                        if len(self.pending) >= self.FEEDBACK_BATCH:
                            self._send_feedback(client)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.sent[market] += 1
                    if isinstance(outcome, tuple):
                        self.answered += 1
                        self.by_answer[outcome] += 1
                        self.latencies.setdefault(outcome, []).append(
                            (time.perf_counter() - sent_at) * 1000
                        )
                    else:
                        self.failed += 1
                        if len(self.failures) < 5:
                            self.failures.append(outcome)
                due += self.interval
                delay = due - time.monotonic()
                if delay > 0:
                    self.halt.wait(delay)
                else:  # fell behind (a slow answer): keep the rate, do not burst to catch up
                    due = time.monotonic()

    def _send_feedback(self, client: Any) -> None:
        """Send the pending labels in one request (the server stores them with its log)."""
        import httpx

        batch, self.pending = self.pending, []
        body = [{"request_id": item["request_id"], "label": item["label"]} for item in batch]
        try:
            response = client.post(
                "/v1/feedback", json=body, headers={"Authorization": f"Bearer {self.token}"}
            )
            ok = response.status_code == 200
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        with self.lock:
            if ok:
                self.labelled.update(item["m"] for item in batch)
            elif len(self.feedback_failures) < 5:
                self.feedback_failures.append(problem)

    def seen(self, version: int, role: str) -> bool:
        """Whether ``version`` has answered in ``role``."""
        with self.lock:
            return (version, role) in self.by_answer

    def counts(self) -> dict[str, Any]:
        """What was sent and answered so far."""
        with self.lock:
            return {
                "sent": sum(self.sent.values()),
                "sent_by_market": dict(self.sent),
                "answered": self.answered,
                "failed": self.failed,
                "failures": list(self.failures),
                "labelled_by_market": dict(self.labelled),
                "feedback_failures": list(self.feedback_failures),
                "by_version": {
                    f"v{v} ({role})": n for (v, role), n in sorted(self.by_answer.items())
                },
                "latency_ms": {
                    f"v{v} ({role})": _percentiles(values)
                    for (v, role), values in sorted(self.latencies.items())
                },
            }

    def finish(self) -> None:
        """Stop after the request in flight."""
        self.halt.set()
        self.join(15)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(ordered[len(ordered) // 2], 1),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "max": round(ordered[-1], 1),
    }


# ------------------------------------------------------------------------------ the demo
@dataclass
class Demo:
    """The demo's working folder, what steps tell each other, and what it started."""

    work: Path
    size: Size = FULL
    facts: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    background: list[Background] = field(default_factory=list)
    traffic: Traffic | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment of every command: this interpreter's tools first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        # The server, the watch and the traffic share two cores: OpenMP's spinning threads in
        # scikit-learn's gradient boosting would turn every prediction's tail into seconds.
        env["OMP_NUM_THREADS"] = "1"
        return env

    def mlcd(
        self, *args: str, expect: int | tuple[int, ...] = 0, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in the working folder; its progress (stderr) goes to the terminal
        unless ``quiet`` (then it is kept for the error message)."""
        result = subprocess.run(
            [sys.executable, "-m", "mlcd.cli.main", *args],
            cwd=self.work,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if quiet else None,
            text=True,
        )
        expected = (expect,) if isinstance(expect, int) else expect
        if result.returncode not in expected:
            raise DemoFailed(
                f"'mlcd {' '.join(args)}' exited with {result.returncode} (expected "
                f"{' or '.join(map(str, expected))})\n{result.stdout}{result.stderr or ''}"
            )
        return result

    def mlcd_json(self, *args: str, expect: int | tuple[int, ...] = 0, quiet: bool = False) -> Any:
        """Run a command with ``--json`` and parse what it printed."""
        return json.loads(self.mlcd(*args, "--json", expect=expect, quiet=quiet).stdout)

    def start(self, name: str, *args: str) -> Background:
        """Start ``mlcd ARGS`` in the background; its stderr goes to ``.demo/logs/NAME.log``."""
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        process = Background(
            name,
            [sys.executable, "-m", "mlcd.cli.main", *args],
            self.work,
            self.env,
            logs / f"{name}.log",
        )
        self.background.append(process)
        self.logs[name] = str(process.log)
        return process

    def git(self, *args: str) -> str:
        """Run git in the working folder (with a fixed identity)."""
        result = subprocess.run(
            ["git", "-c", "user.name=mlcd demo", "-c", "user.email=demo@mlcd.invalid", *args],
            cwd=self.work,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise DemoFailed(f"'git {' '.join(args)}' failed: {result.stderr.strip()}")
        return result.stdout

    def close(self) -> None:
        """Stop the traffic and every background process (idempotent)."""
        if self.traffic is not None and self.traffic.is_alive():
            self.traffic.finish()
        while self.background:
            process = self.background.pop()
            if process.alive:
                say(f"stopping {process.name} (pid {process.process.pid})")
            process.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; DemoFailed after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
