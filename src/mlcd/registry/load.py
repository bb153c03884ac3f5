"""Loading a model: from a package folder, or from the registry by ``name@alias`` / ``name/3``.

A registered version is fetched from the object store into a local cache folder named by
its digest, verified file by file against the stored manifest on every load (a tampered
cache copy is replaced from the object store; a corrupt stored object is refused, naming
the file), and loaded through its flavor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlcd.digest import Digest, hash_file
from mlcd.errors import CorruptObject, ObjectNotFound, RegistryError, UnsafeModel
from mlcd.objects import ObjectStore
from mlcd.objects.base import ManifestEntry, iter_files, safe_join
from mlcd.registry.context import default_cache_dir, project_context
from mlcd.registry.flavors import missing_library
from mlcd.registry.model import LoadedModel
from mlcd.registry.package import PACKAGE_FILE, ModelPackage
from mlcd.registry.versions import ModelVersion, is_ref, resolve
from mlcd.store import Store


def load_model(
    ref: str | os.PathLike[str],
    *,
    store: Store | None = None,
    objects: ObjectStore | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    trusted: bool = False,
) -> LoadedModel:
    """Load a model by reference (``name@alias``, ``name@latest``, ``name/3``) or folder path.

    Every file is checked against its digest before anything is deserialised.

    Args:
        ref: a registry reference or a package folder.
        store: the metadata store (default: the project around the working folder).
        objects: the object store holding the packages (default: the project's).
        cache_dir: where fetched packages are kept (default: the project's
            ``.mlcd/cache/models``, or ``MLCD_MODEL_CACHE``).
        trusted: allow pickle-based packages.

    Returns:
        The loaded model with ``predict``, ``predict_proba``, ``classes``, ``signature``,
        ``name``, ``version`` and ``digest``.

    Raises:
        UnsafeModel: a file is modified, unlisted or escapes the folder; pickle untrusted.
        NotFound: the model, version or alias does not exist.
        RegistryError: the folder is not a package.
    """
    text = os.fspath(ref)
    if not is_ref(text):
        try:
            package = ModelPackage.read(text, verify=True)
        except OSError as exc:  # a name too long for the file system, a folder we may not read
            shown = text if len(text) <= 120 else f"{text[:60]}…{text[-40:]} ({len(text)} chars)"
            raise RegistryError(
                f"cannot read a model package at {shown}: {exc.strerror or exc}",
                hint="pass a package folder written by mlcd.save_model, 'name@alias' or "
                "'name/VERSION'",
            ) from exc
        return _load_package(package, None, None, str(package_digest(package)), trusted)
    if store is None or objects is None:
        context_store, context_objects, context_cache = project_context()
        store = store or context_store
        objects = objects or context_objects
        cache_dir = cache_dir or context_cache
    version = resolve(store, text)
    folder = fetch(objects, version, cache_dir or default_cache_dir())
    package = ModelPackage.read(folder, verify=False)  # fetch verified every file already
    return _load_package(package, version.name, version.version, version.digest, trusted)


def _load_package(
    package: ModelPackage, name: str | None, version: int | None, digest: str, trusted: bool
) -> LoadedModel:
    flavor = package.flavor_impl()
    try:
        predictor = flavor.load(package.path, package.options, trusted)
    except ImportError as exc:
        raise missing_library(flavor.name, exc) from exc
    except (UnsafeModel, RegistryError):
        raise
    except Exception as exc:
        raise RegistryError(
            f"the {flavor.name} flavor could not load {package.path}: {exc}",
            hint=f"the package was saved with {package.libraries or 'unknown versions'} on "
            f"Python {package.python or '?'}; install matching versions",
        ) from exc
    return LoadedModel(package, predictor, name=name, version=version, digest=digest)


def package_digest(package: ModelPackage) -> Digest:
    """The ``.dir`` digest a verified package would get in the object store."""
    from mlcd.digest import hash_bytes
    from mlcd.objects.base import encode_manifest

    meta = package.path / PACKAGE_FILE
    entries = [ManifestEntry(f.path, Digest(f.digest), f.size) for f in package.files.values()]
    entries.append(ManifestEntry(PACKAGE_FILE, hash_file(meta), meta.stat().st_size))
    return Digest(hash_bytes(encode_manifest(entries)).hex, is_dir=True)


def fetch(objects: ObjectStore, version: ModelVersion, cache_dir: str | os.PathLike[str]) -> Path:
    """The verified local folder of a version, fetched into ``cache_dir`` when needed.

    Raises:
        UnsafeModel: a file of the stored package is corrupt (named in the message).
        ObjectNotFound: the package is not in the object store.
    """
    digest = Digest.parse(version.digest)
    try:
        manifest = objects.read_manifest(digest)
    except ObjectNotFound as exc:
        raise ObjectNotFound(
            f"the package of model {version.ref} ({digest.short}) is not in {objects.url}",
            hint="run 'mlcd pull' to fetch it from the remote",
        ) from exc
    folder = Path(cache_dir) / digest.hex
    if folder.is_dir():
        if _matches(folder, manifest):
            return folder
        # A cache copy that differs from the registry is never used: fetch it again.
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest.short}-", dir=folder.parent))
    try:
        for entry in manifest:
            try:
                objects.get_file(entry.digest, safe_join(staging, entry.path))
            except CorruptObject as exc:
                raise UnsafeModel(
                    f"file '{entry.path}' of model {version.ref} is corrupt in {objects.url}: "
                    "its bytes no longer match the registered digest",
                    hint="restore the object from a remote ('mlcd pull') or register the model again",
                ) from exc
            except ObjectNotFound as exc:
                raise ObjectNotFound(
                    f"file '{entry.path}' of model {version.ref} is missing from {objects.url}",
                    hint="run 'mlcd pull' to fetch it from the remote",
                ) from exc
        try:
            os.replace(staging, folder)
        except OSError:
            if not folder.is_dir():  # another process won the race: use its copy
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _matches(folder: Path, manifest: list[ManifestEntry]) -> bool:
    expected = {entry.path: entry.digest.hex for entry in manifest}
    seen = 0
    for relative, full in iter_files(folder):
        digest = expected.get(relative)
        if digest is None or full.is_symlink() or hash_file(full).hex != digest:
            return False
        seen += 1
    return seen == len(expected)


def loaded_summary(model: LoadedModel) -> dict[str, Any]:
    """A JSON-ready description of a loaded model (for CLIs and health endpoints)."""
    return {
        "name": model.name,
        "version": model.version,
        "digest": model.digest,
        "flavor": model.flavor,
        "task": model.task,
        "classes": model.classes,
        "signature": model.signature.to_dict(),
    }
