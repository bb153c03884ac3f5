"""Evaluation: metrics, paired bootstrap comparison, gates, reports and gated promotion.

Layer 3a: imports the registry, the store and the objects; never serve, monitor or pipeline.
"""

from mlcd.evaluate.bootstrap import Delta, paired_bootstrap
from mlcd.evaluate.evaluation import Evaluation, ModelResult, evaluate, read_table
from mlcd.evaluate.gate import Gate, GateResult, GateVerdict, check_gates, parse_gate, parse_gates
from mlcd.evaluate.metrics import Scored, point
from mlcd.evaluate.promotion import Promotion, promote, record_evaluation
from mlcd.evaluate.reports import write_reports

__all__ = [
    "Delta",
    "Evaluation",
    "Gate",
    "GateResult",
    "GateVerdict",
    "ModelResult",
    "Promotion",
    "Scored",
    "check_gates",
    "evaluate",
    "paired_bootstrap",
    "parse_gate",
    "parse_gates",
    "point",
    "promote",
    "read_table",
    "record_evaluation",
    "write_reports",
]
