"""A fork server for the suite's CLI subprocesses: each ``run_cli`` is a new process running
the real ``python -m mlcd.cli.main`` (``run_python``: ``python -c CODE``), forked from one that
has already imported the third-party libraries the CLI loads (scikit-learn and skops alone take
1.4 CPU-seconds to import here).

Why: the suite runs a few thousand CLI commands on a 2-core machine, and their imports were
the largest share of its CPU time. What a command does is unchanged: a forked process of its
own, with the test's working folder, environment, argv and pipes for stdout and stderr, that
runs ``mlcd.cli.main`` as ``__main__``, exactly as ``-m`` does. Of mlcd itself the modules most
commands load are imported ahead (:data:`PRELOAD_MLCD`), and the server refuses to start
if any of them reads the environment while it is imported: a value read then would be the
server's, not the test's. Its exit status (a code or a
signal) and CPU time come back from the server, which reaps it, as ``subprocess.run`` would
report the status.

Tests about start-up itself (import laziness, ``--help`` time) start their own interpreter and
do not come here; ``MLCD_TEST_CLI_FORK=0`` sends every ``run_cli`` to a plain subprocess.
"""

from __future__ import annotations

import array
import atexit
import gc
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

#: What the server imports before it forks: third-party only (never mlcd, whose modules may read
#: the environment at import time, and which each command must import with its own).
PRELOAD = (
    "typer",
    "rich.console",
    "rich.table",
    "pydantic",
    "yaml",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "alembic",
    "numpy",
    "pandas",
    "scipy.stats",
    "sklearn.base",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.metrics",
    "skops.io",
    "pyarrow",
    "pyarrow.parquet",
    "blake3",
    "fsspec",
    "httpx",
)

#: mlcd's modules that most commands load, imported ahead too (they read no environment at
#: import; checked). Not ``mlcd.cli.main``: each command runs it afresh as ``__main__``.
PRELOAD_MLCD = (
    "mlcd.config",
    "mlcd.store",
    "mlcd.store.tables",
    "mlcd.registry",
    "mlcd.objects",
    "mlcd.project",
    "mlcd.secrets",
    "mlcd.contracts.validate",
    "mlcd.pipeline",
    "mlcd.pipeline.dag",
    "mlcd.tracking.query",
    "mlcd.evaluate",
    "mlcd.monitor",
    "mlcd.cli.output",
    "mlcd.cli.lazy",
    "mlcd.cli.pipeline_view",
    "mlcd.cli.pipeline_cmd",
    "mlcd.cli.project_cmd",
    "mlcd.cli.tracking_cmd",
    "mlcd.cli.models_cmd",
    "mlcd.cli.events_cmd",
)

_HEADER = struct.Struct("!I")


def _send_msg(conn: socket.socket, payload: dict[str, object], fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(payload).encode()
    message = _HEADER.pack(len(data)) + data
    if fds:
        conn.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        conn.sendall(message)


def _recv_exact(conn: socket.socket, size: int, fds: list[int]) -> bytes:
    chunks = b""
    while len(chunks) < size:
        data, ancdata, _flags, _addr = conn.recvmsg(size - len(chunks), socket.CMSG_SPACE(16))
        for level, kind, raw in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(raw[: len(raw) - (len(raw) % got.itemsize)])
                fds.extend(got)
        if not data:
            raise EOFError
        chunks += data
    return chunks


def _recv_msg(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    fds: list[int] = []
    (size,) = _HEADER.unpack(_recv_exact(conn, _HEADER.size, fds))
    return json.loads(_recv_exact(conn, size, fds)), fds


# ---------------------------------------------------------------------------------- server side


def _run_command(request: dict[str, object]) -> int:
    """In the forked command process: become ``python -m mlcd.cli.main <args>`` and run."""
    import io
    import runpy
    import traceback

    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(str(request["cwd"]))
    tempfile.tempdir = None  # gettempdir() re-reads TMPDIR from this environment
    encoding = env.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    sys.stdin = io.TextIOWrapper(
        open(0, "rb", closefd=False),  # noqa: SIM115
        encoding=encoding,
    )
    sys.stdout = io.TextIOWrapper(
        open(1, "wb", closefd=False),  # noqa: SIM115
        encoding=encoding,
        line_buffering=True,
        write_through=True,
    )
    sys.stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False),  # noqa: SIM115
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )
    args = request["args"]
    assert isinstance(args, list)
    source = request.get("code")
    if isinstance(source, str):  # python -c SOURCE ARGS: '' first on the path, code as __main__
        import types

        sys.path.insert(0, "")
        sys.argv = ["-c", *map(str, args)]
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = main

        def start() -> None:
            exec(compile(source, "<string>", "exec"), main.__dict__)

    else:  # python -m mlcd.cli.main ARGS: the working folder first on the path

        def start() -> None:
            runpy.run_module("mlcd.cli.main", run_name="__main__", alter_sys=True)

        sys.path.insert(0, os.getcwd())
        sys.argv = ["-m", *map(str, args)]
    code = 0
    try:
        start()
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    return code & 0xFF


def _start_command(
    conn: socket.socket, others: list[socket.socket], closing: tuple[int, ...]
) -> int:
    """In the server: read one request, fork its command, tell the client the pid."""
    request, fds = _recv_msg(conn)
    pid = os.fork()
    if pid == 0:  # the command process
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sock in (conn, *others):
                sock.close()
            for fd in closing:
                os.close(fd)
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            for fd in fds:
                os.close(fd)
            code = _run_command(request)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _send_msg(conn, {"pid": pid})
    return pid


def _report_exits(running: dict[int, socket.socket]) -> None:
    """Reap every command that has ended and send its client the exit status and CPU time."""
    while running:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is None:
            continue
        try:
            _send_msg(
                conn,
                {
                    "returncode": os.waitstatus_to_exitcode(status),
                    "cpu": usage.ru_utime + usage.ru_stime,
                },
            )
        except OSError:  # the client gave up (its timeout) and closed its end
            pass
        conn.close()


def _preload_mlcd() -> None:
    """Import :data:`PRELOAD_MLCD` with every read of ``os.environ`` watched; refuse (raise)
    if one came from mlcd's own code."""
    import traceback

    kind = type(os.environ)
    plain = kind.__getitem__
    reads: list[str] = []

    def watched(self: object, key: str) -> str:
        for frame in reversed(traceback.extract_stack()[:-1]):  # the caller, past os.getenv
            if frame.filename.endswith(
                ("os.py", "_collections_abc.py", " os>", "_collections_abc>")
            ):
                continue
            if "/src/mlcd/" in frame.filename:
                reads.append(f"{key} at {frame.filename}:{frame.lineno}")
            break
        return plain(self, key)  # type: ignore[arg-type]

    kind.__getitem__ = watched  # type: ignore[method-assign,assignment]
    try:
        for name in PRELOAD_MLCD:
            __import__(name)
    finally:
        kind.__getitem__ = plain  # type: ignore[method-assign]
    if reads:
        raise RuntimeError(
            "the fork server cannot import these ahead, they read the environment at import: "
            + "; ".join(reads)
            + " (remove the module from PRELOAD_MLCD in tests/cli_forkserver.py)"
        )


def serve(path: str) -> None:
    """The server: import the libraries, then fork a command per connection and reap it."""
    here = str(Path(__file__).parent)
    sys.path[:] = [entry for entry in sys.path if entry not in ("", here)]
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    _preload_mlcd()
    # What is loaded now stays out of the collector's walks: a command's first collection
    # would otherwise touch (and so copy) every page of the ~250 MB it shares with us.
    gc.collect()
    gc.freeze()
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.setblocking(False)
    # One process forks every command and reaps it (no waiter process per command: each
    # fork of this ~250 MB process costs CPU); a SIGCHLD wakes the loop through this pipe.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    running: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while os.getppid() == parent:  # the test worker that started us is gone: stop
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                try:
                    pid = _start_command(conn, [listener, *running.values()], (wake_r, wake_w))
                except (OSError, EOFError, ValueError):
                    conn.close()
                    continue
                running[pid] = conn
            else:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
        _report_exits(running)


# ---------------------------------------------------------------------------------- client side


class ForkServer:
    """One server per test process, started on first use and stopped at exit."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="mlcd-forkserver-")
        self.path = os.path.join(self._folder, "sock")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import cli_forkserver; cli_forkserver.serve({self.path!r})",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the CLI fork server did not start (said {line!r})")
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        try:
            os.unlink(self.path)
            os.rmdir(self._folder)
        except OSError:
            pass

    def run(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        code: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m mlcd.cli.main ARGS``, or with ``code`` ``python -c CODE ARGS``."""
        command = argv(args, code)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            _send_msg(
                conn,
                {"args": list(args), "cwd": str(cwd), "env": dict(env), "code": code},
                (devnull, out_w, err_w),
            )
        finally:
            for fd in (devnull, out_w, err_w):
                os.close(fd)
        outputs = {out_r: bytearray(), err_r: bytearray()}
        reader = threading.Thread(target=_drain, args=(outputs,), daemon=True)
        reader.start()
        conn.settimeout(timeout)
        pid = None
        try:
            pid = int(_recv_msg(conn)[0]["pid"])  # type: ignore[call-overload]
            done = _recv_msg(conn)[0]
            returncode = int(done["returncode"])  # type: ignore[call-overload]
            _add_child_cpu(float(done.get("cpu", 0.0)))  # type: ignore[arg-type]
        except TimeoutError:
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            reader.join(5)
            raise subprocess.TimeoutExpired(
                command, timeout, output=_text(outputs[out_r]), stderr=_text(outputs[err_r])
            ) from None
        finally:
            conn.close()
        reader.join()
        return subprocess.CompletedProcess(
            command, returncode, stdout=_text(outputs[out_r]), stderr=_text(outputs[err_r])
        )


def argv(args: list[str], code: str | None = None) -> list[str]:
    """The command line of a new interpreter doing the same: ``python -m mlcd.cli.main ARGS``,
    or with ``code`` ``python -c CODE ARGS``."""
    entry = ["-m", "mlcd.cli.main"] if code is None else ["-c", code]
    return [sys.executable, *entry, *args]


def _drain(outputs: dict[int, bytearray]) -> None:
    """Read the command's stdout and stderr to their ends (as ``communicate`` does)."""
    with selectors.DefaultSelector() as selector:
        for fd in outputs:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(outputs)
        while open_fds:
            for key, _ in selector.select():
                data = os.read(key.fd, 65536)
                if data:
                    outputs[key.fd] += data
                else:
                    selector.unregister(key.fd)
                    os.close(key.fd)
                    open_fds.discard(key.fd)


def _text(data: bytearray) -> str:
    """Decoded like ``subprocess.run(text=True)``: universal newlines."""
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


#: Variables read when an interpreter starts, not later: a command whose environment sets them
#: differently from the server's needs an interpreter of its own.
_STARTUP_KEYS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LD_PRELOAD")
_RUNTIME_KEYS = ("PYTHONUNBUFFERED", "PYTHONIOENCODING")


def forkable(env: dict[str, str]) -> bool:
    """Whether a command with this environment can be forked from the server (started with
    this process's environment) rather than started as a new interpreter."""
    if env.get("MLCD_TEST_CLI_FORK", os.environ.get("MLCD_TEST_CLI_FORK", "1")) == "0":
        return False

    def startup(values: dict[str, str]) -> dict[str, str]:
        return {
            key: value
            for key, value in values.items()
            if (key.startswith("PYTHON") and key not in _RUNTIME_KEYS) or key in _STARTUP_KEYS
        }

    return startup(env) == startup(dict(os.environ))


_server: ForkServer | None = None
_server_pid: int | None = None

#: CPU seconds used by the commands this process had the server run (they are the server's
#: children, not ours: ``os.times()`` does not see them). The suite's per-test CPU adds it.
child_cpu = 0.0
_cpu_lock = threading.Lock()


def _add_child_cpu(seconds: float) -> None:
    global child_cpu
    with _cpu_lock:
        child_cpu += seconds


_starting = threading.Lock()


def server() -> ForkServer:
    """This process's fork server (a new one after a fork of the test process itself)."""
    global _server, _server_pid
    with _starting:
        if _server is None or _server_pid != os.getpid():
            _server = ForkServer()
            _server_pid = os.getpid()
        return _server
