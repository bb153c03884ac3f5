"""`mlcd models register|list|show|history|tag|rollback` driven as a user would."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.registry.fixtures import churn_frame, save_churn_model


def _json(result) -> object:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_register_list_show_tag_and_rollback(project: Path) -> None:
    frame = churn_frame(400)
    save_churn_model(project / "models" / "a", frame, kind="weak")
    save_churn_model(project / "models" / "b", frame, kind="good")

    first = _json(run_cli(["models", "register", "churn", "models/a", "--json"], cwd=project))
    again = _json(run_cli(["models", "register", "churn", "models/a", "--json"], cwd=project))
    second = _json(
        run_cli(
            ["models", "register", "churn", "models/b", "--tag", "team=x", "--json"], cwd=project
        )
    )
    assert (first["version"], first["created"]) == (1, True)
    assert (again["version"], again["created"]) == (1, False)
    assert (second["version"], second["tags"]) == (2, {"team": "x"})

    # no gates declared in this project: promotion just moves the alias (and records it)
    for version in ("1", "2"):
        result = run_cli(["models", "promote", "churn", version, "--alias", "prod"], cwd=project)
        assert result.returncode == 0, result.stderr
    tagged = _json(run_cli(["models", "tag", "churn", "2", "reviewed=yes", "--json"], cwd=project))
    assert tagged["tags"] == {"team": "x", "reviewed": "yes"}

    listed = _json(run_cli(["models", "list", "--json"], cwd=project))
    assert [(m["name"], m["versions"], m["aliases"]) for m in listed] == [("churn", 2, {"prod": 2})]
    shown = _json(run_cli(["models", "show", "churn@prod", "--json"], cwd=project))
    assert shown["version"] == 2
    assert shown["package"]["flavor"] == "sklearn"
    assert [c["name"] for c in shown["package"]["signature"]["inputs"]] == ["age", "spend", "plan"]

    back = _json(
        run_cli(
            ["models", "rollback", "churn", "--alias", "prod", "--reason", "oops", "--json"],
            cwd=project,
        )
    )
    assert (back["from_version"], back["to_version"]) == (2, 1)
    events = _json(
        run_cli(["models", "history", "churn", "--alias", "prod", "--json"], cwd=project)
    )
    assert [(e["kind"], e["version"], e["reason"]) for e in events] == [
        ("alias.rollback", 1, "oops"),
        ("alias.set", 2, None),
        ("alias.set", 1, None),
    ]


def test_register_errors_exit_with_the_documented_codes(project: Path) -> None:
    (project / "junk").mkdir()

    not_package = run_cli(["models", "register", "churn", "junk"], cwd=project)
    bad_name = run_cli(["models", "register", "a/b", "junk"], cwd=project)
    unknown = run_cli(["models", "show", "nope"], cwd=project)
    bad_tag = run_cli(["models", "tag", "nope", "1", "novalue"], cwd=project)

    assert not_package.returncode == 3
    assert "has no model.yaml" in not_package.stderr
    assert bad_name.returncode == 2
    assert "invalid model name" in bad_name.stderr
    assert unknown.returncode == 3
    assert "no model named 'nope'" in unknown.stderr
    assert bad_tag.returncode == 2
    assert "KEY=VALUE" in bad_tag.stderr


def test_rollback_without_history_fails_and_says_what_to_do(project: Path) -> None:
    save_churn_model(project / "models" / "a", churn_frame(300))
    assert run_cli(["models", "register", "churn", "models/a"], cwd=project).returncode == 0
    assert run_cli(["models", "promote", "churn", "1"], cwd=project).returncode == 0

    result = run_cli(["models", "rollback", "churn"], cwd=project)

    assert result.returncode == 3
    assert "no earlier version" in result.stderr
    assert "mlcd models promote churn VERSION" in result.stderr
