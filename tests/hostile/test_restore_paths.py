"""Issue 20, item 2: paths from mlcd.lock, pointer files and remote manifests never write
outside the project, into ``.git/`` or into ``.mlcd/``.

One real project is built and pushed to a real remote folder per module (copied into each test),
each test makes a clone as git would
give it, plants one hostile path and runs the real CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mlcd.digest import Digest
from mlcd.objects import LocalObjectStore
from tests.conftest import run_cli
from tests.pipeline.conftest import (
    CHAIN,
    CHAIN_FILES,
    calls,
    stage_env,
    write,
)
from tests.pipeline.conftest import make_project as _make_project
from tests.pipeline.conftest import mlcd as _mlcd

make_project = _make_project  # the pipeline tests' fixtures
mlcd = _mlcd

CONFIG = (
    CHAIN.replace("deps: [input.txt]", "deps: [input.txt, raw]")
    + "\nremotes:\n  origin: {url: ../remote}\n"
)
COMMITTED = ["mlcd.yaml", "params.yaml", "input.txt", "raw.mlcd", "mlcd.lock"]


@pytest.fixture(scope="module")
def _pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project that ran and pushed everything to ``../remote``, made once per module by the
    real CLI (data add, run, push); nested so ``../..`` exists."""
    base = tmp_path_factory.mktemp("restore-origin")
    root = base / "deep" / "er" / "origin"
    root.mkdir(parents=True)
    write(root, {"mlcd.yaml": CONFIG, **CHAIN_FILES})
    write(root, {"raw/a.csv": "x\n1\n", "raw/b.csv": "x\n2\n"})
    assert _mlcd_call(root, "data", "add", "raw").returncode == 0
    ran = _mlcd_call(root, "run", "--json")
    assert ran.returncode == 0, ran.stderr
    pushed = _mlcd_call(root, "push")
    assert pushed.returncode == 0, pushed.stderr
    return base / "deep"


def _mlcd_call(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), cwd=root, env=stage_env())


@pytest.fixture
def origin(_pushed: Path, tmp_path: Path) -> Path:
    """The pushed project and its remote, copied into this test's folder (the same files the
    CLI wrote; a copy of the folder is what the CLI would make here)."""
    shutil.copytree(_pushed, tmp_path / "deep", symlinks=True)
    return tmp_path / "deep" / "er" / "origin"


def _clone(origin: Path, name: str = "clone") -> Path:
    """What a colleague (or CI) gets from git: the committed files, no data, no .mlcd."""
    clone = origin.parent / name
    clone.mkdir()
    (clone / ".git" / "hooks").mkdir(parents=True)
    for relative in COMMITTED:
        shutil.copy2(origin / relative, clone / relative)
    return clone


def _git_init(clone: Path) -> None:
    """Make the clone a git repository with everything committed, as CI checks it out."""
    shutil.rmtree(clone / ".git")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "pr"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
            cwd=clone,
            check=True,
            capture_output=True,
        )


def _retarget_lock(clone: Path, old: str, new: str) -> None:
    """Rename an out of mlcd.lock, as a pull request editing the lock would."""
    lock = clone / "mlcd.lock"
    text = lock.read_text()
    assert f"\n      {old}: " in text
    lock.write_text(text.replace(f"\n      {old}: ", f"\n      {json.dumps(new)}: "))


def _hostile_target(clone: Path, which: str) -> tuple[str, Path]:
    """A hostile lock entry and the file it would write."""
    outside = clone.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    (clone / "link").symlink_to(outside, target_is_directory=True)
    return {
        "absolute": (str(outside / "absolute.txt"), outside / "absolute.txt"),
        "dotdot": ("../../escaped.txt", clone.parent.parent / "escaped.txt"),
        "git-hook": (".git/hooks/post-checkout", clone / ".git" / "hooks" / "post-checkout"),
        "git-hook-case": (".GIT/hooks/post-merge", clone / ".GIT" / "hooks" / "post-merge"),
        "state-dir": (".mlcd/mlcd.db", clone / ".mlcd" / "mlcd.db"),
        "symlinked-folder": ("link/through-symlink.txt", outside / "through-symlink.txt"),
    }[which]


@pytest.mark.parametrize(
    "which",
    ["absolute", "dotdot", "git-hook", "git-hook-case", "state-dir", "symlinked-folder"],
)
def test_pull_refuses_a_hostile_lock_entry_and_writes_nothing(origin: Path, mlcd, which) -> None:
    # Guards against a pull request's mlcd.lock making 'mlcd pull' write outside the project.
    clone = _clone(origin)
    entry, target = _hostile_target(clone, which)
    _retarget_lock(clone, "a.txt", entry)

    result = mlcd(clone, "pull")

    assert result.returncode == 2, result.stdout + result.stderr
    assert entry in result.stderr
    assert not target.exists()
    assert not (clone / "c.txt").exists() and not (clone / "raw").exists()  # nothing at all


def test_run_refuses_a_hostile_lock_entry(origin: Path, mlcd) -> None:
    # Guards against any other reader of mlcd.lock (run, status) trusting a hostile out path.
    clone = _clone(origin)
    _retarget_lock(clone, "a.txt", ".git/hooks/post-checkout")

    result = mlcd(clone, "run")

    assert result.returncode == 2
    assert ".git/hooks/post-checkout" in result.stderr
    assert calls(clone) == []
    assert not (clone / ".git" / "hooks" / "post-checkout").exists()


@pytest.mark.parametrize(
    ("pointer", "name"),
    [(".git.mlcd", ".git"), ("decoy.mlcd", "mlcd.yaml"), (".mlcd.mlcd", ".mlcd")],
)
def test_pull_refuses_a_hostile_pointer_file(origin: Path, mlcd, pointer, name) -> None:
    # Guards against a committed *.mlcd pointer naming git's or mlcd's state, or another file.
    clone = _clone(origin)
    digest = (origin / "raw.mlcd").read_text().split("digest: ")[1].split()[0]
    (clone / pointer).write_text(f"path: {name}\ndigest: {digest}\nsize: 1\nfiles: 2\n")
    before = (clone / "mlcd.yaml").read_text()

    result = mlcd(clone, "pull")

    assert result.returncode == 2, result.stdout + result.stderr
    assert pointer in result.stderr and name in result.stderr
    assert not (clone / ".git" / "a.csv").exists() and not (clone / ".mlcd" / "a.csv").exists()
    assert (clone / "mlcd.yaml").read_text() == before
    assert not (clone / "a.txt").exists()


@pytest.mark.parametrize(
    "name",
    [
        "../../manifest-escape.txt",
        "/tmp/mlcd-manifest-absolute.txt",
        "sub\\..\\..\\win.txt",
        "C:/drive.txt",
        "nul\x00byte.txt",
        "./../dot.txt",
    ],
)
def test_pull_skips_a_remote_manifest_with_a_hostile_entry(origin: Path, mlcd, name) -> None:
    # Guards against a hand-crafted directory manifest on the remote writing outside its folder.
    remote = LocalObjectStore(origin.parent / "remote")
    blob = remote.put_bytes(b"#!/bin/sh\necho owned\n")
    manifest = json.dumps([{"path": name, "digest": blob.hex, "size": 20}]).encode()
    crafted = Digest(remote.put_bytes(manifest).hex, is_dir=True)
    clone = _clone(origin)
    lock = clone / "mlcd.lock"
    text = lock.read_text()
    start = text.index("out_b: ") + len("out_b: ")
    lock.write_text(text[:start] + str(crafted) + text[text.index("\n", start) :])

    result = mlcd(clone, "pull", "--json")

    assert result.returncode == 2, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [b["paths"] for b in report["bad"]] == [["out_b"]]
    assert repr(name) in report["bad"][0]["problem"] or name in report["bad"][0]["problem"]
    assert not (clone / "out_b").exists()
    for escaped in [
        clone.parent.parent / "manifest-escape.txt",
        Path("/tmp/mlcd-manifest-absolute.txt"),
        clone.parent.parent / "win.txt",
        clone.parent.parent / "dot.txt",
    ]:
        assert not escaped.exists()
    assert (clone / "a.txt").read_text() == "a=hello\n"  # the rest was restored
    assert (clone / "raw" / "a.csv").exists()


def test_ci_with_a_hostile_lock_fails_before_running_anything(origin: Path, mlcd) -> None:
    # Guards against 'mlcd ci' (which pulls first) writing a git hook from a pull request's lock.
    clone = _clone(origin)
    _git_init(clone)
    _retarget_lock(clone, "a.txt", ".git/hooks/post-checkout")

    result = mlcd(clone, "ci", "--json")

    assert result.returncode == 2, result.stdout + result.stderr
    assert ".git/hooks/post-checkout" in result.stderr
    assert not (clone / ".git" / "hooks" / "post-checkout").exists()
    assert calls(clone) == []  # no stage ran
    assert not (clone / "c.txt").exists()


def test_symlink_planted_after_the_lock_was_read_is_refused_at_restore(origin: Path, mlcd) -> None:
    # Guards against a symlinked folder appearing after mlcd.lock was parsed and cached.
    clone = _clone(origin)
    _retarget_lock(clone, "a.txt", "later/a.txt")
    mlcd(clone, "status")  # parses mlcd.lock and caches it in .mlcd/pipeline.json
    assert "later/a.txt" in (clone / ".mlcd" / "pipeline.json").read_text()
    outside = clone.parent.parent / "outside-later"
    outside.mkdir()
    (clone / "later").symlink_to(outside, target_is_directory=True)

    result = mlcd(clone, "pull")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "later/a.txt" in result.stderr and "symlink" in result.stderr
    assert list(outside.iterdir()) == []


def test_a_stage_out_through_a_symlinked_folder_is_a_config_error(make_project, mlcd) -> None:
    # Guards against mlcd.yaml declaring an out that mlcd.lock would then have to refuse.
    outside = make_project("stages: {}\n", name="elsewhere")
    root = make_project(
        "stages:\n  s:\n    cmd: echo x > link/out.txt && echo s >> calls.log\n"
        "    outs: [link/out.txt]\n"
    )
    (root / "link").symlink_to(outside, target_is_directory=True)

    result = mlcd(root, "run")

    assert result.returncode == 2
    assert "stage 's'" in result.stderr and "link/out.txt" in result.stderr
    assert calls(root) == [] and not (outside / "out.txt").exists()


def test_ci_stops_before_running_anything_on_a_hostile_remote_manifest(origin: Path, mlcd) -> None:
    # Guards against 'mlcd ci' going on (running stages) after a pull met a crafted manifest.
    remote = LocalObjectStore(origin.parent / "remote")
    blob = remote.put_bytes(b"owned\n")
    manifest = json.dumps([{"path": "../../ci-escape.txt", "digest": blob.hex, "size": 6}])
    crafted = Digest(remote.put_bytes(manifest.encode()).hex, is_dir=True)
    clone = _clone(origin)
    text = (clone / "mlcd.lock").read_text()
    start = text.index("out_b: ") + len("out_b: ")
    (clone / "mlcd.lock").write_text(text[:start] + str(crafted) + text[text.index("\n", start) :])
    _git_init(clone)

    result = mlcd(clone, "ci", "--json")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "'../../ci-escape.txt'" in result.stderr
    assert calls(clone) == []  # no stage ran
    assert not (clone.parent.parent / "ci-escape.txt").exists()


def test_tracked_folder_holding_a_nested_git_repository_still_round_trips(
    origin: Path, mlcd
) -> None:
    # Guards against the manifest check refusing honest data (a dataset cloned with git).
    write(origin, {"corpus/text.txt": "hello\n", "corpus/.git/HEAD": "ref: refs/heads/main\n"})
    assert mlcd(origin, "data", "add", "corpus").returncode == 0
    assert mlcd(origin, "push").returncode == 0
    clone = _clone(origin)
    shutil.copy2(origin / "corpus.mlcd", clone / "corpus.mlcd")

    result = mlcd(clone, "pull")

    assert result.returncode == 0, result.stderr
    assert (clone / "corpus" / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
