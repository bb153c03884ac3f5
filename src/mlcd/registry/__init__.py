"""The model registry: packages (``save_model``), versions, aliases, loading (``load_model``).

Layer 2: imports only ``store``, ``objects``, ``config`` and below. Promotion through gates
lives in ``mlcd.evaluate.promotion`` because it needs the gates.
"""

from mlcd.registry.context import clear_contexts, project_context
from mlcd.registry.load import fetch, load_model, package_digest
from mlcd.registry.model import LoadedModel
from mlcd.registry.package import PACKAGE_FILE, ModelPackage, content_digest, save_model
from mlcd.registry.signature import ColumnSpec, OutputSpec, Signature
from mlcd.registry.versions import (
    AliasMove,
    ModelVersion,
    Registration,
    delete_alias,
    describe,
    get_version,
    history,
    list_models,
    parse_ref,
    record_metrics,
    register_from_path,
    register_model,
    resolve,
    rollback,
    set_alias,
    tag,
)

__all__ = [
    "PACKAGE_FILE",
    "AliasMove",
    "ColumnSpec",
    "LoadedModel",
    "ModelPackage",
    "ModelVersion",
    "OutputSpec",
    "Registration",
    "Signature",
    "clear_contexts",
    "content_digest",
    "delete_alias",
    "describe",
    "fetch",
    "get_version",
    "history",
    "list_models",
    "load_model",
    "package_digest",
    "parse_ref",
    "project_context",
    "record_metrics",
    "register_from_path",
    "register_model",
    "resolve",
    "rollback",
    "save_model",
    "set_alias",
    "tag",
]
