"""CI workflow templates: GitHub Actions and GitLab CI files that run ``mlcd ci``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlcd.errors import UsageError

#: kind -> (template file, where it goes in the project)
WORKFLOWS = {
    "github": ("github.yml", Path(".github/workflows/mlcd.yml")),
    "gitlab": ("gitlab.yml", Path(".gitlab-ci.yml")),
}


def render_workflow(kind: str, branch: str = "main", python: str = "3.11", extras: str = "") -> str:
    """The text of the ``kind`` workflow.

    Args:
        kind: ``github`` or ``gitlab``.
        branch: the default branch, where versions are promoted.
        python: the Python version CI installs.
        extras: mlcd extras to install, e.g. ``postgres,s3``.

    Raises:
        UsageError: an unknown kind.
    """
    if kind not in WORKFLOWS:
        raise UsageError(f"unknown CI system {kind!r}", hint=f"use one of: {', '.join(WORKFLOWS)}")
    template = resources.files("mlcd.ci").joinpath("templates", WORKFLOWS[kind][0]).read_text()
    return (
        template.replace("__BRANCH__", branch)
        .replace("__PYTHON__", python)
        .replace("__EXTRAS__", f"[{extras}]" if extras else "")
    )


def write_workflow(root: Path, kind: str, force: bool = False, **options: str) -> tuple[Path, bool]:
    """Write the workflow file into ``root``; returns (path, written). Keeps an existing file
    unless ``force``."""
    path = root / WORKFLOWS[kind][1] if kind in WORKFLOWS else root
    text = render_workflow(kind, **options)
    if path.exists() and not force:
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path, True
