"""Sharing experiments through a remote: ``mlcd exp push`` and ``mlcd exp pull``.

An experiment travels as a small JSON document, ``exp/<run id>.json`` beside the remote's
objects and ``runcache/`` entries: the run's row, params, tags, metric points, artifact
references and stage results. Its objects (outputs, metrics files, the stored lock and params
files, stage logs, and the inputs the local store has) go first, with the run-cache entries of
its stages, and the document last: a remote never holds a document whose objects are missing.

A pull checks each document before trusting it (shape, ids, digests, safe paths), fetches its
objects, and inserts the run under its own id: pulling twice imports once, and a pulled
experiment is an experiment like any other (``exp show``, ``exp apply``, ``exp branch``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest
from mlcd.errors import (
    CheckFailed,
    MlcdError,
    ObjectError,
    UnsafePath,
    UsageError,
)
from mlcd.experiments.apply import find_experiment
from mlcd.experiments.run import LOCK_ARTIFACT, PARAMS_PREFIX, TAG_EXP, TAG_NAME
from mlcd.layout import project_path_problem
from mlcd.pipeline.cachefiles import RemoteDocuments
from mlcd.store.records import RUN_COLUMNS

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store
    from mlcd.tracking.query import RunRecord

#: The remote folder of experiment documents, and their format tag.
EXP_FOLDER = "exp"
FORMAT = "mlcd.exp/1"
#: The tag a pulled experiment gets: the remote it came from.
TAG_REMOTE = "mlcd.exp.remote"
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")
_ROLES = ("input", "output", "metrics", "artifact", "log")
_STAGE_FIELDS = (
    "fingerprint",
    "outcome",
    "reason",
    "started_at",
    "ended_at",
    "duration_s",
    "log_digest",
    "error",
)
_ENDED = ("finished", "failed", "killed")


class ExperimentFiles(RemoteDocuments):
    """Experiment documents as ``exp/<run id>.json`` next to a remote's objects."""

    def __init__(self, objects: ObjectStore) -> None:
        super().__init__(objects, EXP_FOLDER, "experiments", _ID)

    def get(self, run_id: str) -> dict[str, Any]:
        """One document, checked (``ObjectError`` or ``UnsafePath`` if it is not sound)."""
        document = self.read(run_id, f"experiment {run_id}")
        return validate_document(document, run_id, self.url)

    def put(self, document: Mapping[str, Any]) -> None:
        """Write a document (atomically on a local folder)."""
        data = json.dumps(dict(document), sort_keys=True, indent=1).encode("utf-8")
        self.write(str(document["run"]["id"]), data)


def _bad(run_id: str, where: str, problem: str) -> ObjectError:
    return ObjectError(
        f"experiment {run_id} on {where} is invalid: {problem}",
        hint="delete that file from the remote and push the experiment again",
    )


def _strings(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_document(document: Any, run_id: str, where: str) -> dict[str, Any]:
    """Check an experiment document fetched from elsewhere before it is trusted.

    Raises:
        ObjectError: wrong format, id or shape, or a bad digest.
        UnsafePath: a params file path outside the project.
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _bad(run_id, where, f"it is not a {FORMAT} document")
    run = document.get("run")
    if not isinstance(run, dict) or run.get("id") != run_id or not _ID.match(run_id):
        raise _bad(run_id, where, "its run id does not match its name")
    if run.get("status") not in _ENDED or not _number(run.get("started_at")):
        raise _bad(run_id, where, "its run has no end status or start time")
    parent = run.get("parent_id")
    if parent is not None and not (isinstance(parent, str) and _ID.match(parent)):
        raise _bad(run_id, where, f"its parent run id {parent!r} is not an id")
    for key in ("params", "tags"):
        if not _strings(document.get(key)):
            raise _bad(run_id, where, f"'{key}' is not a mapping of text")
    if document["tags"].get(TAG_EXP) != "1":
        raise _bad(run_id, where, "it is not tagged as an experiment")
    metrics = document.get("metrics")
    if not isinstance(metrics, list) or not all(
        isinstance(p, list)
        and len(p) == 4
        and isinstance(p[0], str)
        and all(_number(x) for x in p[1:])
        for p in metrics
    ):
        raise _bad(run_id, where, "'metrics' is not a list of [key, value, step, time]")
    artifacts = document.get("artifacts")
    if not isinstance(artifacts, list):
        raise _bad(run_id, where, "'artifacts' is not a list")
    for item in artifacts:
        if (
            not isinstance(item, dict)
            or item.get("role") not in _ROLES
            or not isinstance(item.get("path"), str)
            or not isinstance(item.get("digest"), str)
        ):
            raise _bad(run_id, where, f"artifact {item!r} lacks a role, path or digest")
        _parse(item["digest"], run_id, where)
        path = item["path"]
        if item["role"] == "artifact" and path.startswith(PARAMS_PREFIX):
            problem = project_path_problem(path.removeprefix(PARAMS_PREFIX))
            if problem is not None:
                raise UnsafePath(
                    f"experiment {run_id} on {where}: params file {path!r} {problem}; "
                    "refused, nothing was written",
                    hint="mlcd never writes such a document: delete it from the remote",
                )
    stages = document.get("stages")
    if not isinstance(stages, list) or not all(
        isinstance(s, dict) and isinstance(s.get("stage"), str) for s in stages
    ):
        raise _bad(run_id, where, "'stages' is not a list of stage results")
    for stage in stages:
        if stage.get("log_digest"):
            _parse(str(stage["log_digest"]), run_id, where)
    return document


def _parse(text: str, run_id: str, where: str) -> Digest:
    try:
        return Digest.parse(text)
    except (MlcdError, ValueError) as exc:
        raise _bad(run_id, where, f"bad digest {text!r}") from exc


# ------------------------------------------------------------------------------- export


def export_experiment(conn: Any, record: RunRecord) -> dict[str, Any]:
    """The document of experiment ``record`` (read in ``conn``)."""
    from sqlalchemy import select

    from mlcd.store import runs
    from mlcd.store.tables import runs as runs_table

    row = conn.execute(select(runs_table).where(runs_table.c.id == record.id)).mappings().one()
    points = runs.metric_history(conn, record.id)
    return {
        "format": FORMAT,
        "run": {k: row[k] for k in RUN_COLUMNS},
        "params": runs.params_of(conn, record.id),
        "tags": {k: v for k, v in runs.tags_of(conn, record.id).items() if k != TAG_REMOTE},
        "metrics": [[p.key, p.value, p.step, p.timestamp] for p in points],
        "artifacts": [
            {"role": a.role, "path": a.path, "digest": a.digest, "size": a.size, "stage": a.stage}
            for a in runs.artifacts_of(conn, record.id)
        ],
        "stages": [
            {"stage": s["stage"], **{k: s.get(k) for k in _STAGE_FIELDS}}
            for s in runs.stages_of(conn, record.id)
        ],
    }


def _lock_entries(document: Mapping[str, Any], objects: ObjectStore) -> dict[str, Any]:
    """The stored ``mlcd.lock`` of a document (``{}`` if it kept none or it is unreadable)."""
    from mlcd.pipeline.lockfile import parse_lock

    ref = next((a for a in document["artifacts"] if a["path"] == LOCK_ARTIFACT), None)
    if ref is None or ref["role"] != "artifact":
        return {}
    digest = Digest.parse(ref["digest"])
    if not objects.has(digest):
        return {}
    try:
        return dict(parse_lock(objects.get_bytes(digest).decode("utf-8")))
    except (MlcdError, UnicodeDecodeError):
        return {}


def needed_digests(
    document: Mapping[str, Any], objects: ObjectStore
) -> tuple[list[str], list[str]]:
    """``(required, optional)`` digests of a document: what ``exp apply`` needs (outputs,
    metrics, the lock and params files, logs, every output in the lock) and its inputs.

    Args:
        objects: a store holding the document's lock (to read the outputs it lists).
    """
    required: list[str] = []
    optional: list[str] = []
    for item in document["artifacts"]:
        (optional if item["role"] == "input" else required).append(item["digest"])
    required += [str(s["log_digest"]) for s in document["stages"] if s.get("log_digest")]
    for entry in _lock_entries(document, objects).values():
        required += list(entry.outs.values())
    required = list(dict.fromkeys(required))
    return required, [d for d in dict.fromkeys(optional) if d not in set(required)]


def _has(objects: ObjectStore, text: str) -> bool:
    return objects.has(Digest(Digest.parse(text).hex))


@dataclass
class ShareReport:
    """What an ``exp push`` or ``exp pull`` did, experiment by experiment."""

    remote: str
    done: list[dict[str, Any]] = field(default_factory=list)
    present: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    objects_copied: int = 0
    objects_present: int = 0
    entries_copied: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def error(self, verb: str) -> MlcdError | None:
        """The error the command exits with when an experiment was skipped, else None."""
        if not self.skipped:
            return None
        names = "; ".join(f"{s['name']}: {s['reason']}" for s in self.skipped[:5])
        message = f"{len(self.skipped)} experiment(s) not {verb}: {names}"
        hint = "the others were; fix what is said and run the command again"
        if any(s.get("unsafe") for s in self.skipped):  # exit 2, as 'mlcd pull' does
            return UnsafePath(message, hint=hint)
        return CheckFailed(message, hint=hint)


def push_experiments(
    store: Store,
    local: ObjectStore,
    remote: ObjectStore,
    refs: Sequence[str] = (),
    every: bool = False,
) -> ShareReport:
    """Send experiments (by name, id or id prefix; or ``every`` one) and their objects.

    An experiment still running, or whose objects are no longer stored here, is skipped and
    listed in ``ShareReport.skipped``; the others are pushed.

    Raises:
        UsageError: no experiment named, or an unknown one (nothing was sent).
    """
    from mlcd.experiments.show import experiment_records
    from mlcd.pipeline.cachefiles import RunCacheFiles
    from mlcd.pipeline.transfer import copy_missing
    from mlcd.store import cache

    _check_choice(refs, every, "push")
    report = ShareReport(remote.url)
    files = ExperimentFiles(remote)
    with store.read() as conn:
        if every:
            records = experiment_records(conn)
        else:
            records = list({r.id: r for r in (find_experiment(conn, ref) for ref in refs)}.values())
        documents = [export_experiment(conn, record) for record in records]
    chosen = []
    wanted: list[str] = []
    for document in documents:
        item = {"id": document["run"]["id"], "name": _name(document)}
        if document["run"]["status"] not in _ENDED:
            report.skipped.append({**item, "reason": "it is still running"})
            continue
        required, optional = needed_digests(document, local)
        lost = [d for d in required if not _has(local, d)]
        if lost:
            report.skipped.append(
                {**item, "reason": f"{len(lost)} of its objects are no longer stored here"}
            )
            continue
        chosen.append(document)
        wanted += required + [d for d in optional if _has(local, d)]
    copied, present = copy_missing(local, remote, list(dict.fromkeys(wanted)))
    report.objects_copied, report.objects_present = copied, present
    cache_files = RunCacheFiles(remote)
    there = cache_files.list()
    with store.read() as conn:
        for document in chosen:
            for entry in _lock_entries(document, local).values():
                if entry.fingerprint in there:
                    continue
                found = cache.get_entry(conn, entry.fingerprint)
                if found is not None and all(_has(remote, d) for d in found["outputs"].values()):
                    cache_files.put(found)
                    there.add(entry.fingerprint)
                    report.entries_copied += 1
    listed = files.list()
    for document in chosen:
        item = {"id": document["run"]["id"], "name": _name(document)}
        files.put(document)
        (report.present if item["id"] in listed else report.done).append(item)
    return report


def _name(document: Mapping[str, Any]) -> str:
    return str(document["tags"].get(TAG_NAME) or document["run"]["id"])


def _check_choice(refs: Sequence[str], every: bool, verb: str) -> None:
    if every and refs:
        raise UsageError(f"name experiments or pass --all, not both (exp {verb})")
    if not every and not refs:
        raise UsageError(
            f"which experiments? name them (or their run ids), or pass --all (exp {verb})",
            hint=f"for example: mlcd exp {verb} low-lr",
        )


# ------------------------------------------------------------------------------- import


def _resolve(files: ExperimentFiles, ids: set[str], refs: Sequence[str]) -> list[str]:
    """The remote run ids ``refs`` name (an exact id, a unique id prefix, or a name).

    Raises:
        UsageError: a name or id the remote does not hold.
    """
    chosen: list[str] = []
    names: dict[str, list[tuple[float, str]]] | None = None
    for ref in refs:
        if ref in ids:
            chosen.append(ref)
            continue
        if names is None:
            names = {}
            for run_id in ids:
                try:
                    document = files.get(run_id)
                except MlcdError:
                    continue
                names.setdefault(_name(document), []).append(
                    (float(document["run"]["started_at"]), run_id)
                )
        if ref in names:
            chosen.append(max(names[ref])[1])
            continue
        prefixed = [i for i in ids if len(ref) >= 4 and i.startswith(ref)]
        if len(prefixed) == 1:
            chosen.append(prefixed[0])
            continue
        raise UsageError(
            f"the remote {files.url} holds no experiment '{ref}'"
            + (" (the id prefix is ambiguous)" if len(prefixed) > 1 else ""),
            hint=f"push it from the clone that ran it: mlcd exp push {ref}",
        )
    return list(dict.fromkeys(chosen))


def _insert(conn: Any, document: Mapping[str, Any], remote_url: str) -> bool:
    """Insert the run of ``document``; False if a run with its id is already here."""
    from sqlalchemy import select

    from mlcd.store import runs
    from mlcd.store.tables import runs as runs_table

    run = document["run"]
    run_id = run["id"]
    if conn.execute(select(runs_table.c.id).where(runs_table.c.id == run_id)).first():
        return False
    parent = run.get("parent_id")
    if (
        parent
        and not conn.execute(select(runs_table.c.id).where(runs_table.c.id == parent)).first()
    ):
        parent = None  # e.g. a sweep's parent run, which does not travel: the trial stands alone
    conn.execute(
        runs_table.insert().values(
            id=run_id,
            name=run.get("name"),
            kind=str(run.get("kind") or "pipeline"),
            status=run["status"],
            parent_id=parent or None,
            started_at=float(run["started_at"]),
            ended_at=run.get("ended_at"),
            git_commit=run.get("git_commit"),
            git_dirty=run.get("git_dirty"),
            user=run.get("user"),
            heartbeat_at=run.get("ended_at"),
        )
    )
    if document["params"]:
        runs.log_params(conn, run_id, document["params"])
    runs.set_tags(conn, run_id, {**document["tags"], TAG_REMOTE: remote_url})
    runs.log_metric_rows(
        conn, run_id, [(k, float(v), int(s), float(t)) for k, v, s, t in document["metrics"]]
    )
    runs.add_artifacts(
        conn,
        run_id,
        [
            runs.ArtifactRef(a["role"], a["path"], a["digest"], a.get("size"), a.get("stage"))
            for a in document["artifacts"]
        ],
    )
    for stage in document["stages"]:
        values = {k: stage.get(k) for k in _STAGE_FIELDS}
        values["outcome"] = str(values["outcome"] or "skipped")
        runs.record_stage(conn, run_id, stage["stage"], **values)
    return True


def pull_experiments(
    store: Store,
    local: ObjectStore,
    remote: ObjectStore,
    refs: Sequence[str] = (),
    every: bool = False,
) -> ShareReport:
    """Import experiments from a remote (by name, id or id prefix; or ``every`` one).

    An experiment already here (same run id) is left as it is (``present``). One whose
    document is not sound, or whose objects the remote lacks or holds corrupt, is skipped and
    listed in ``ShareReport.skipped``; nothing of it is recorded.

    Raises:
        UsageError: no experiment named, or one the remote does not hold (nothing was pulled).
    """
    from sqlalchemy import select

    from mlcd.pipeline.cachefiles import RunCacheFiles
    from mlcd.pipeline.transfer import copy_missing
    from mlcd.store import cache
    from mlcd.store.tables import runs as runs_table

    _check_choice(refs, every, "pull")
    report = ShareReport(remote.url)
    files = ExperimentFiles(remote)
    ids = files.list()
    chosen = sorted(ids) if every else _resolve(files, ids, refs)
    with store.read() as conn:
        here = {
            r[0] for r in conn.execute(select(runs_table.c.id).where(runs_table.c.id.in_(chosen)))
        }
    documents = []
    for run_id in chosen:
        try:
            document = files.get(run_id)
        except MlcdError as exc:
            unsafe = isinstance(exc, UnsafePath)
            report.skipped.append(
                {"id": run_id, "name": run_id, "reason": exc.message, "unsafe": unsafe}
            )
            continue
        if run_id in here:
            report.present.append({"id": run_id, "name": _name(document)})
        else:
            documents.append(document)
    documents.sort(key=lambda d: float(d["run"]["started_at"]))  # parents before children
    cache_files = RunCacheFiles(remote)
    entries: list[dict[str, Any]] = []
    with store.read() as conn:
        known = {e["fingerprint"] for e in cache.all_entries(conn)}
    remote_entries = cache_files.list()
    for document in documents:
        item = {"id": document["run"]["id"], "name": _name(document)}
        lock_ref = [a["digest"] for a in document["artifacts"] if a["path"] == LOCK_ARTIFACT]
        bad: dict[str, tuple[str, str, bool]] = {}
        first = [d for d in lock_ref if _has(remote, d)]
        copied, present = copy_missing(remote, local, first, None, bad)
        required, optional = needed_digests(document, local)
        lost = [d for d in required if not _has(remote, d) and not _has(local, d)]
        if lost:
            report.skipped.append(
                {**item, "reason": f"the remote lacks {len(lost)} of its objects"}
            )
            continue
        wanted = [d for d in required if not _has(local, d)]
        wanted += [d for d in optional if _has(remote, d)]
        more = copy_missing(remote, local, wanted, None, bad)
        report.objects_copied += copied + more[0]
        report.objects_present += present + more[1]
        spoiled = [d for d in required if d in bad]
        if spoiled:
            report.skipped.append(
                {**item, "reason": f"object {bad[spoiled[0]][0][:12]}: {bad[spoiled[0]][1]}"}
            )
            continue
        for entry in _lock_entries(document, local).values():
            fingerprint = entry.fingerprint
            if fingerprint in known or fingerprint not in remote_entries:
                continue
            try:
                found = cache_files.get(fingerprint)
            except MlcdError:
                continue  # a bad entry: 'mlcd pull' reports it; the experiment is sound
            if all(_has(local, d) for d in found["outputs"].values()):
                entries.append(found)
                known.add(fingerprint)

        def work(conn: Any, document: Mapping[str, Any] = document) -> bool:
            return _insert(conn, document, remote.url)

        (report.done if store.transact(work) else report.present).append(item)
    if entries:
        store.transact(lambda conn: cache.import_entries(conn, entries))
        report.entries_copied = len(entries)
    return report


def remote_experiments(remote: ObjectStore) -> list[dict[str, Any]]:
    """The experiments a remote holds: id, name, status, start time (unreadable ones left out)."""
    files = ExperimentFiles(remote)
    found = []
    for run_id in sorted(files.list()):
        try:
            document = files.get(run_id)
        except MlcdError:
            continue
        found.append(
            {
                "id": run_id,
                "name": _name(document),
                "status": document["run"]["status"],
                "started_at": document["run"]["started_at"],
            }
        )
    return sorted(found, key=lambda d: d["started_at"], reverse=True)
