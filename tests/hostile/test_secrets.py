"""Planted secrets (a PostgreSQL password, an object-store secret key, a webhook token, a
bearer token in the environment) appear in no output of any command, no event and no file
mlcd writes. Guards against: credentials leaking into CI logs, pull-request comments,
``--json`` documents passed around, the audit trail the UI shows."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from mlcd.secrets import MASK, known_secrets, mask_obj, mask_text
from tests.conftest import run_cli

PG = "PLANTED-pg-Pa55word"
REMOTE = "PLANTED-remote-s3cr3t"
OPTION = "PLANTED-option-s3cr3t"
HOOK = "PLANTEDhook0token0XyZ123456"
ENV_TOKEN = "PLANTED-env-token-0123456789abcdef"
PLANTED = (PG, REMOTE, OPTION, HOOK, ENV_TOKEN)


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"postgresql://mlcd:{PG}@db.internal:5432/mlcd", PG),
        (f"postgresql+psycopg://mlcd:{PG}@db/x?sslmode=require", PG),
        (f"s3://AKIA0EXAMPLE:{REMOTE}@bucket/prefix", REMOTE),
        (f"https://hooks.slack.com/services/T0000/B0000/{HOOK}", HOOK),
        (f"https://example.com/hook?channel=ml&token={HOOK}", HOOK),
        (f"https://example.com/hook?X-Amz-Signature={HOOK}", HOOK),
        (f"send 'Authorization: Bearer {ENV_TOKEN}'", ENV_TOKEN),
        (f"error: {PG} refused", PG),  # known secrets, wherever they appear
    ],
)
def test_mask_text_hides_the_secret_and_keeps_the_rest(text: str, hidden: str) -> None:
    masked = mask_text(text, known=[PG])
    assert hidden not in masked and MASK in masked
    assert masked.split(MASK)[0] == text.split(hidden)[0]  # what precedes it is intact


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:///.mlcd/mlcd.db",
        "https://github.com/iterative/example-get-started",
        "http://127.0.0.1:5000/runs/9970ff3cb09849f2885678f254ac3134",
        "metrics.roc_auc > 0.9 and params.model = 'gbm'",
        "send 'Authorization: Bearer <token>' (create one with 'mlcd tokens create')",
        "digest 3f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a",
    ],
)
def test_mask_text_leaves_ordinary_output_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_obj_hides_secret_named_keys_and_secrets_in_strings() -> None:
    document = {
        "store": f"postgresql://u:{PG}@h/db",
        "remotes": {"s3": {"url": "s3://b/p", "options": {"secret": OPTION, "anon": False}}},
        "items": [{"api_key": "abc123"}, "plain"],
    }
    masked = mask_obj(document)
    assert PG not in json.dumps(masked) and OPTION not in json.dumps(masked)
    assert masked["remotes"]["s3"]["options"]["anon"] is False
    assert masked["items"] == [{"api_key": MASK}, "plain"]


def test_known_secrets_come_from_secret_named_variables_and_url_passwords() -> None:
    environ = {
        "MLCD_SERVE_TOKEN": ENV_TOKEN,
        "MLCD_STORE": f"postgresql://u:{PG}@h/db",
        "AWS_SECRET_ACCESS_KEY": REMOTE,
        "HOME": "/home/someone",
    }
    assert sorted(known_secrets(environ)) == sorted([ENV_TOKEN, PG, REMOTE])


CONFIG = f"""\
store: sqlite:///.mlcd/mlcd.db
remotes:
  origin:
    url: s3://AKIA0EXAMPLE:{REMOTE}@mlcd-test-bucket/x
    options: {{secret: {OPTION}, client_kwargs: {{endpoint_url: "http://127.0.0.1:1"}}}}
monitor:
  alerts:
    webhooks:
      - url: https://hooks.slack.com/services/T0000/B0000/{HOOK}
stages:
  hello:
    cmd: python -c "open('out.txt', 'w').write('hi')"
    outs: [out.txt]
"""


def test_a_planted_secret_appears_in_no_output_event_or_file(tmp_path: Path) -> None:
    root = tmp_path / "project"
    init = run_cli(["init", str(root)], cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    (root / "mlcd.yaml").write_text(CONFIG)
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
        ["events", "--json"],
        ["tokens", "create", "ci", "--role", "read"],
        ["nonsense-command"],
    ]
    outputs = []
    for args in commands:
        result = run_cli(args, cwd=root, env=env, timeout=120)
        outputs.append((args, result.stdout + result.stderr))
    # The store that cannot be reached: its password must not come back in the error.
    pg_env = {**env, "MLCD_STORE": f"postgresql://mlcd:{PG}@127.0.0.1:1/nowhere"}
    for args in (["runs", "list"], ["events"], ["doctor", "--json"]):
        result = run_cli(args, cwd=root, env=pg_env, timeout=120)
        assert result.returncode != 0
        outputs.append((args, result.stdout + result.stderr))
    for args, text in outputs:
        for secret in PLANTED:
            assert secret not in text, f"mlcd {' '.join(args)} printed {secret}:\n{text}"
        assert "Traceback" not in text, args

    # nothing mlcd wrote keeps them either: lock, state database, logs
    written = [p for p in root.rglob("*") if p.is_file() and p.name != "mlcd.yaml"]
    assert any(p.name == "mlcd.lock" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in PLANTED:
            assert secret.encode() not in data, f"{path} holds {secret}"
    with sqlite3.connect(root / ".mlcd" / "mlcd.db") as conn:
        rows = conn.execute("select reason, details from events").fetchall()
    assert rows  # the token creation is an event
    assert not any(s in repr(rows) for s in PLANTED)
