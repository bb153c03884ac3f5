"""``mlcd exp branch``: a git branch holding an experiment, made without touching the work tree.

The branch has one commit on top of the experiment's base commit (``mlcd.exp.base``): the base
tree with the experiment's params files and ``mlcd.lock`` in place of the base's. It is built
with git plumbing on a temporary index file (``GIT_INDEX_FILE``): the user's work tree, index
and current branch are never read or written. The outputs are not in git; they are in the
object store by digest, so after ``git checkout NAME`` the command ``mlcd run`` restores them
from the run cache (or ``mlcd pull`` from the remote).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import PipelineError, UsageError
from mlcd.experiments.apply import find_experiment
from mlcd.experiments.run import LOCK_ARTIFACT, PARAMS_PREFIX, TAG_BASE, TAG_NAME, TAG_OVERRIDES

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store


def _git(
    root: Path, args: Sequence[str], env: dict[str, str] | None = None, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=root,
            input=data,
            capture_output=True,
            timeout=120,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", **(env or {})},
        )
    except FileNotFoundError as exc:
        raise UsageError("git is not installed", hint="install git to make branches") from exc


def _out(done: subprocess.CompletedProcess[bytes], what: str) -> str:
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise PipelineError(
            f"git failed to {what}: {message}",
            hint="check the repository with 'git status'; nothing was changed",
        )
    return done.stdout.decode("utf-8").strip()


def _check_name(root: Path, branch: str) -> None:
    """Refuse a name git does not accept as a branch, or one that exists already."""
    done = _git(root, ["check-ref-format", "--branch", branch])
    if done.returncode != 0 or branch.startswith("-"):
        raise UsageError(
            f"'{branch}' is not a valid git branch name",
            hint="see 'git check-ref-format --help'; for example: exp/low-lr",
        )
    if _git(root, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"]).returncode == 0:
        raise UsageError(
            f"a branch named '{branch}' exists already",
            hint=f"pick another name, or delete it first: git branch -D {branch}",
        )


def branch_experiment(
    root: Path, store: Store, objects: ObjectStore, ref: str, branch: str
) -> dict[str, Any]:
    """Make git branch ``branch`` holding experiment ``ref`` on top of its base commit.

    Args:
        root: the project root (inside a git repository, maybe below its top).
        store: the metadata store.
        objects: the object store holding the experiment's lock and params files.
        ref: the experiment's name, run id or id prefix.
        branch: the new branch's name.

    Returns:
        ``{"id", "name", "branch", "commit", "base", "files"}``.

    Raises:
        UsageError: no such experiment, not a git repository, a bad or taken branch name, or a
            base commit this repository does not have; nothing was changed.
        PipelineError: the experiment kept no lock, or git failed.
    """
    from mlcd.digest import Digest
    from mlcd.layout import project_path
    from mlcd.pipeline.lockfile import LOCK_FILE
    from mlcd.store import runs

    with store.read() as conn:
        record = find_experiment(conn, ref)
        refs = [a for a in runs.artifacts_of(conn, record.id) if a.role == "artifact"]
    name = record.tags.get(TAG_NAME) or record.id
    if _git(root, ["rev-parse", "--git-dir"]).returncode != 0:
        raise UsageError(
            f"{root} is not in a git repository", hint="git init, commit, then run experiments"
        )
    base = record.tags.get(TAG_BASE) or ""
    if not base:
        raise UsageError(
            f"experiment '{name}' has no base commit (it ran outside git, or before a commit)",
            hint="use 'mlcd exp apply' and commit, instead",
        )
    if _git(root, ["cat-file", "-e", f"{base}^{{commit}}"]).returncode != 0:
        raise UsageError(
            f"experiment '{name}' is based on commit {base[:12]}, which this repository lacks",
            hint="git fetch the branch it was made on, then try again",
        )
    _check_name(root, branch)
    files: dict[str, bytes] = {}
    for artifact in refs:
        if artifact.path == LOCK_ARTIFACT:
            files[LOCK_FILE] = objects.get_bytes(Digest.parse(artifact.digest))
        elif artifact.path.startswith(PARAMS_PREFIX):
            file = artifact.path.removeprefix(PARAMS_PREFIX)
            project_path(root, file, f"experiment '{name}': params file")
            files[file] = objects.get_bytes(Digest.parse(artifact.digest))
    if LOCK_FILE not in files:
        raise PipelineError(
            f"experiment '{name}' kept no mlcd.lock, so no branch can hold it",
            hint="run it again with mlcd exp run",
        )
    prefix = _out(_git(root, ["rev-parse", "--show-prefix"]), "find the project in the repository")
    with tempfile.TemporaryDirectory(prefix="mlcd-branch-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _out(_git(root, ["read-tree", base], env), f"read commit {base[:12]}")
        for file, data in sorted(files.items()):
            path = prefix + file
            blob = _out(_git(root, ["hash-object", "-w", "--stdin"], data=data), "store a file")
            listed = _out(_git(root, ["ls-files", "-s", "--", path], env), "read the index")
            mode = listed.split(" ", 1)[0] if listed else "100644"
            if mode not in ("100644", "100755"):
                mode = "100644"
            _out(
                _git(root, ["update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"], env),
                f"stage {path}",
            )
        tree = _out(_git(root, ["write-tree"], env), "write the tree")
    overrides = record.tags.get(TAG_OVERRIDES) or "{}"
    message = f"mlcd experiment {name}\n\nrun {record.id}, overrides {overrides}\n"
    commit = _out(
        _git(root, ["commit-tree", tree, "-p", base], data=message.encode("utf-8")),
        "make the commit (is user.name/user.email set?)",
    )
    # The empty old value makes the update fail if the branch appeared meanwhile.
    _out(
        _git(root, ["update-ref", f"refs/heads/{branch}", commit, ""]),
        f"create branch {branch}",
    )
    return {
        "id": record.id,
        "name": name,
        "branch": branch,
        "commit": commit,
        "base": base,
        "files": sorted(files),
    }
