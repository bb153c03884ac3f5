"""Planted secrets (a PostgreSQL password, an object-store secret key, a webhook token, a
bearer token in the environment) appear in no output of any command, no event and no file
mlcd writes. Guards against: credentials leaking into CI logs, pull-request comments,
``--json`` documents passed around, the audit trail the UI shows, and a database driver's
error message quoting the connection string."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcd import secrets
from mlcd.errors import ConfigError, StoreError
from mlcd.secrets import MASK, known_secrets, mask_obj, mask_text, mask_url, secrets_in
from tests.conftest import run_cli

PG = "PLANTED-pg-Pa55word"
REMOTE = "PLANTED-remote-s3cr3t"
OPTION = "PLANTED-option-s3cr3t"
HOOK = "PLANTEDhook0token0XyZ123456"
#: a webhook token that does not look random (no digits, short): only remembering the
#: configured webhook's path can hide it
PLAIN_HOOK = "PLANTEDplainhook"
ENV_TOKEN = "PLANTED-env-token-0123456789abcdef"
PLANTED = (PG, REMOTE, OPTION, HOOK, PLAIN_HOOK, ENV_TOKEN)


@pytest.fixture(autouse=True)
def _forget_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing remembered (the registry is per process)."""
    monkeypatch.setattr(secrets, "_REMEMBERED", set())


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"postgresql://mlcd:{PG}@db.internal:5432/mlcd", PG),
        (f"postgresql+psycopg://mlcd:{PG}@db/x?sslmode=require", PG),
        (f"postgresql://mlcd:{PG}@with-at@db/x", PG + "@with-at"),  # '@' in the password
        (f"redis://:{PG}@cache:6379/0", PG),  # no user name
        (f"s3://AKIA0EXAMPLE:{REMOTE}@bucket/prefix", REMOTE),
        (f"https://user:{PG}@example.com/path", PG),
        (f"https://hooks.slack.com/services/T0000/B0000/{HOOK}", HOOK),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "T000/B000/XXXX"),
        (f"https://discord.com/api/webhooks/1234/{PLAIN_HOOK}", PLAIN_HOOK),
        (f"https://example.com/hook?channel=ml&token={HOOK}", HOOK),
        (f"https://example.com/x?password={PG}&page=2", PG),
        (f"https://example.com/hook?X-Amz-Signature={HOOK}", HOOK),
        (f"https://acct.blob.core.windows.net/c?sv=2022&sig={HOOK}", HOOK),
        (f"send 'Authorization: Bearer {ENV_TOKEN}'", ENV_TOKEN),
        (f"error: {PG} refused", PG),  # known secrets, wherever they appear
    ],
)
def test_mask_text_hides_the_secret_and_keeps_the_rest(text: str, hidden: str) -> None:
    masked = mask_text(text, known=[PG])
    assert hidden not in masked and MASK in masked
    # what precedes it is intact (a webhook keeps only its scheme and host)
    assert text.startswith(masked.split(MASK)[0]) and "://" in masked.split(MASK)[0] + "://"


def test_mask_url_keeps_the_user_host_and_database() -> None:
    assert mask_url(f"postgresql://mlcd:{PG}@db:5432/mlcd?sslmode=require") == (
        "postgresql://mlcd:***@db:5432/mlcd?sslmode=require"
    )
    assert mask_url("https://hooks.slack.com/services/T0/B0/abc") == "https://hooks.slack.com/***"


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:///.mlcd/mlcd.db",
        "postgresql://mlcd@db:5432/mlcd",  # a user, no password
        "https://github.com/iterative/example-get-started",
        "http://127.0.0.1:5000/runs/9970ff3cb09849f2885678f254ac3134",
        "http://127.0.0.1:8000/v1/models/churn/predict?alias=champion&limit=10",
        "metrics.roc_auc > 0.9 and params.model = 'gbm'",
        "write to alice@example.com, port 5432, user:pass in the docs",
        "send 'Authorization: Bearer <token>' (create one with 'mlcd tokens create')",
        "digest 3f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a",
        "learning_rate=0.1 max_depth=6 tokenizer=bert",
    ],
)
def test_mask_text_leaves_ordinary_output_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_obj_hides_secret_named_keys_webhooks_and_secrets_in_strings() -> None:
    document = {
        "store": f"postgresql://u:{PG}@h/db",
        "remotes": {"s3": {"url": "s3://b/p", "options": {"secret": OPTION, "anon": False}}},
        "monitor": {
            "alerts": {
                "webhooks": [{"url": f"https://alerts.example.com/n/{PLAIN_HOOK}"}],
                "allowed_hosts": ["alerts.example.com"],
            }
        },
        "items": [{"api_key": "abc123"}, {"accessToken": "xyz"}, "plain"],
        "params": {"tokenizer": "bert", "max_tokens": 512, "key": "metrics.auc"},
    }
    masked = mask_obj(document)
    text = json.dumps(masked)
    assert PG not in text and OPTION not in text and PLAIN_HOOK not in text
    assert masked["monitor"]["alerts"]["webhooks"] == [{"url": "https://alerts.example.com/***"}]
    assert masked["monitor"]["alerts"]["allowed_hosts"] == ["alerts.example.com"]
    assert masked["remotes"]["s3"]["options"]["anon"] is False
    assert masked["items"] == [{"api_key": MASK}, {"accessToken": MASK}, "plain"]
    assert masked["params"] == document["params"]  # no false masking of ordinary keys


def test_known_secrets_come_from_secret_named_variables_and_url_passwords() -> None:
    environ = {
        "MLCD_SERVE_TOKEN": ENV_TOKEN,
        "MLCD_STORE": f"postgresql://u:{PG}@h/db",
        "AWS_SECRET_ACCESS_KEY": REMOTE,
        "HOME": "/home/someone",
    }
    assert sorted(known_secrets(environ)) == sorted([ENV_TOKEN, PG, REMOTE])


def test_the_secrets_of_a_configuration_are_remembered_and_then_hidden_literally() -> None:
    config = {
        "store": f"postgresql://u:{PG}@h/db",
        "remotes": [{"url": "s3://b/x", "options": {"secret": OPTION, "key": "AKIA"}}],
        "webhooks": [f"https://alerts.example.com/n/{PLAIN_HOOK}"],
    }
    assert set(secrets_in(config)) == {PG, OPTION, f"/n/{PLAIN_HOOK}"}
    # a driver quoting the password, or the webhook path, without its URL
    text = f"FATAL: password {PG!r} rejected; posting to /n/{PLAIN_HOOK} failed"
    assert mask_text(text, known_secrets({})) == text  # not known yet: patterns miss it
    secrets.remember_config(config)
    masked = mask_text(text, known_secrets({}))
    assert PG not in masked and PLAIN_HOOK not in masked
    assert "AKIA" in mask_text("key AKIA", known_secrets({}))  # an access key id is not secret


def test_a_store_that_cannot_be_reached_names_it_without_the_password(
    open_store: Callable[..., Any],
) -> None:
    """The library itself (no CLI filter in between: the Python API, a stage, the server)."""
    with pytest.raises(StoreError) as caught:
        open_store(f"postgresql://mlcd:{PG}@127.0.0.1:1/x?sslmode=bogus")
    text = "".join(traceback.format_exception(caught.value))
    assert PG not in text
    assert "postgresql+psycopg://mlcd:***@127.0.0.1:1/x" in str(caught.value)
    with pytest.raises(ConfigError) as bad_port:  # not a ValueError traceback
        open_store(f"postgresql://mlcd:{PG}@127.0.0.1:notaport/x")
    assert PG not in "".join(traceback.format_exception(bad_port.value))
    assert "not valid" in str(bad_port.value)


def test_events_are_masked_before_they_are_stored(
    tmp_path: Path, open_store: Callable[..., Any]
) -> None:
    from mlcd.store import events

    store = open_store(f"sqlite:///{tmp_path}/mlcd.db")
    secrets.remember(OPTION)
    store.transact(
        lambda conn: events.record(
            conn,
            "test.secret",
            reason=f"pushed to s3://AKIA:{REMOTE}@bucket with {OPTION}",
            details={"url": f"postgresql://u:{PG}@h/db", "password": "hunter22", "n": 3},
        )
    )
    with sqlite3.connect(tmp_path / "mlcd.db") as conn:
        reason, details = conn.execute(
            "select reason, details from events where kind = 'test.secret'"
        ).fetchone()
    assert not any(s in reason + str(details) for s in (REMOTE, OPTION, PG, "hunter22"))
    assert "s3://AKIA:***@bucket" in reason and '"n": 3' in str(details)


def _config(store: str) -> str:
    return f"""\
store: {store}
remotes:
  origin:
    url: s3://AKIA0EXAMPLE:{REMOTE}@mlcd-test-bucket/x
    options: {{secret: {OPTION}, client_kwargs: {{endpoint_url: "http://127.0.0.1:1"}}}}
monitor:
  alerts:
    webhooks:
      - url: https://hooks.slack.com/services/T0000/B0000/{HOOK}
      - url: https://alerts.example.com/notify/{PLAIN_HOOK}
stages:
  hello:
    cmd: python -c "open('out.txt', 'w').write('hi')"
    outs: [out.txt]
"""


UNREACHABLE = f"postgresql://mlcd:{PG}@127.0.0.1:1/x"


def test_a_planted_secret_appears_in_no_output_event_or_file(tmp_path: Path) -> None:
    root = tmp_path / "project"
    init = run_cli(["init", str(root)], cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    (root / "mlcd.yaml").write_text(_config("sqlite:///.mlcd/mlcd.db"))
    env = {
        "MLCD_SERVE_TOKEN": ENV_TOKEN,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    commands = [
        ["config", "show"],
        ["config", "show", "--json"],
        ["config", "validate"],
        ["run", "--json"],
        ["status", "--json"],
        ["runs", "list", "--json"],
        ["doctor"],
        ["doctor", "--json"],
        ["push", "--json"],  # fails: the remote does not answer; its URL is in the error
        ["pull"],
        ["ci", "--report", "ci/report.md", "--junit", "ci/junit.xml", "--json"],  # reports
        ["events", "--json"],
        ["tokens", "create", "ci", "--role", "read"],
        ["nonsense-command"],
    ]
    outputs = []
    for args in commands:
        result = run_cli(args, cwd=root, env=env, timeout=120)
        outputs.append((args, result.stdout + result.stderr))
        if args == ["config", "show", "--json"]:
            assert result.returncode == 0, result.stderr
            shown = json.loads(result.stdout)
    assert shown["store"] == "sqlite:///.mlcd/mlcd.db"  # what is not secret stays readable
    assert shown["remotes"]["origin"]["url"] == "s3://AKIA0EXAMPLE:***@mlcd-test-bucket/x"
    assert [w["url"] for w in shown["monitor"]["alerts"]["webhooks"]] == [
        "https://hooks.slack.com/***",
        "https://alerts.example.com/***",
    ]

    # The store that cannot be reached, from the environment and from mlcd.yaml: its
    # password must not come back in the error (typer's CLI and the fast `mlcd` entry).
    pg_env = {**env, "MLCD_STORE": UNREACHABLE}
    for args in (["runs", "list"], ["events"], ["doctor", "--json"]):
        result = run_cli(args, cwd=root, env=pg_env, timeout=120)
        assert result.returncode != 0
        outputs.append((args, result.stdout + result.stderr))
    lock = (root / "mlcd.lock").read_bytes()
    (root / "mlcd.yaml").write_text(_config(UNREACHABLE))
    for args in (["runs", "list", "--json"], ["events", "--json"], ["config", "show"]):
        result = run_cli(args, cwd=root, env=env, timeout=120)
        outputs.append((["(store in mlcd.yaml)", *args], result.stdout + result.stderr))
    mlcd = str(Path(sys.executable).parent / "mlcd")
    for args in (["status", "--json"], ["run", "--force"]):
        result = _run_script([mlcd, *args], root, env)
        assert result.returncode == (0 if args[0] == "status" else 3), result.stderr
        outputs.append((["(entry script)", *args], result.stdout + result.stderr))
    (root / "mlcd.yaml").write_text(_config("sqlite:///.mlcd/mlcd.db"))

    for args, text in outputs:
        for secret in PLANTED:
            assert secret not in text, f"mlcd {' '.join(args)} printed {secret}:\n{text}"
        assert "Traceback" not in text, args
    # the error still says which server failed
    assert any("mlcd:***@127.0.0.1:1" in text for _, text in outputs)

    # nothing mlcd wrote keeps them either: lock, state database, logs
    assert (root / "mlcd.lock").read_bytes() == lock
    written = [p for p in root.rglob("*") if p.is_file() and p.name != "mlcd.yaml"]
    assert {"mlcd.lock", "report.md", "junit.xml"} <= {p.name for p in written}
    for path in written:
        data = path.read_bytes()
        for secret in PLANTED:
            assert secret.encode() not in data, f"{path} holds {secret}"
    with sqlite3.connect(root / ".mlcd" / "mlcd.db") as conn:
        rows = conn.execute("select reason, details from events").fetchall()
    assert rows  # the token creation is an event
    assert not any(s in repr(rows) for s in PLANTED)


def _run_script(argv: list[str], cwd: Path, env: dict[str, str]) -> Any:
    """The installed ``mlcd`` script (``mlcd.cli.entry``, whose fast path skips typer)."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
