"""Shared by the stages: the columns of the churn table and small file helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

TARGET = "churned"
NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "senior"]
CATEGORICAL = ["contract", "payment_method", "internet_service"]
FEATURES = NUMERIC + CATEGORICAL


def params() -> dict[str, Any]:
    """params.yaml, read from the project root (stages run there)."""
    return yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write a small JSON document, creating its folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
