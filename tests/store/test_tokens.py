"""Bearer tokens in the metadata store (SQLite and PostgreSQL) and ``mlcd tokens`` on the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlcd.errors import NotFound, UsageError
from mlcd.store import events, tokens
from tests.conftest import run_cli


def test_a_token_is_stored_hashed_listed_without_secret_and_revoked(
    store_url: str, open_store
) -> None:
    store = open_store(store_url)
    with store.write() as conn:
        secret = tokens.create(conn, "ci-feedback", "feedback", expires_at=time.time() + 3600)
    assert secret.startswith("mlcd_") and len(secret) > 40
    with store.read() as conn:
        row = tokens.find(conn, tokens.digest_of(secret))
        listed = tokens.list_tokens(conn)
    assert row is not None and row["name"] == "ci-feedback" and row["role"] == "feedback"
    assert secret not in json.dumps(row)  # only the digest is kept
    assert [t["state"] for t in listed] == ["active"]
    assert "digest" not in listed[0] and secret not in json.dumps(listed)
    with store.write() as conn:
        tokens.revoke(conn, "ci-feedback")
    with store.read() as conn:
        assert tokens.list_tokens(conn)[0]["state"] == "revoked"
        kinds = [e["kind"] for e in events.query(conn, kind="token.*")]
    assert kinds == ["token.revoke", "token.create"]


def test_names_roles_and_reuse(store_url: str, open_store) -> None:
    store = open_store(store_url)
    with store.write() as conn:
        tokens.create(conn, "a", "read")
        with pytest.raises(UsageError, match="exists and is active"):
            tokens.create(conn, "a", "read")
        with pytest.raises(UsageError, match="unknown role"):
            tokens.create(conn, "b", "root")
        with pytest.raises(UsageError, match="not valid"):
            tokens.create(conn, "../x", "read")
        with pytest.raises(NotFound, match="no token named"):
            tokens.revoke(conn, "nobody")
        tokens.revoke(conn, "a")
        again = tokens.create(conn, "a", "admin")  # a revoked name may be reused
    with store.read() as conn:
        assert tokens.find(conn, tokens.digest_of(again))["role"] == "admin"


def test_role_grants() -> None:
    assert tokens.grants("admin", "feedback") and tokens.grants("admin", "predict")
    assert tokens.grants("write", "read") and not tokens.grants("read", "write")
    assert not tokens.grants("predict", "feedback") and not tokens.grants("feedback", "predict")
    assert not tokens.grants("write", "predict") and not tokens.grants("nobody", "read")


def test_cli_creates_lists_and_revokes(project: Path) -> None:
    made = run_cli(["tokens", "create", "ops", "--role", "admin", "--expires", "30d", "--json"],
                   cwd=project)  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    secret = created["token"]
    assert secret.startswith("mlcd_") and created["role"] == "admin"
    assert created["expires_at"] > time.time() + 29 * 86400
    listed = run_cli(["tokens", "list"], cwd=project)
    assert listed.returncode == 0 and "ops" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout
    as_json = run_cli(["tokens", "list", "--json"], cwd=project)
    assert json.loads(as_json.stdout)[0]["name"] == "ops" and secret not in as_json.stdout
    assert run_cli(["tokens", "revoke", "ops"], cwd=project).returncode == 0
    assert "revoked" in run_cli(["tokens", "list"], cwd=project).stdout
    bad = run_cli(["tokens", "create", "x", "--role", "root"], cwd=project)
    assert bad.returncode == 2 and "predict" in bad.stderr
    missing = run_cli(["tokens", "revoke", "nobody"], cwd=project)
    assert missing.returncode != 0 and "no token named" in missing.stderr
    bad_expiry = run_cli(["tokens", "create", "y", "--role", "read", "--expires", "soon"],
                         cwd=project)  # fmt: skip
    assert bad_expiry.returncode == 2, bad_expiry.stderr
