"""The filter language: parse errors with positions, and its meaning on real stores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mlcd.errors import FilterError, UsageError
from mlcd.store import Store, runs
from mlcd.tracking.filter import parse_filter, parse_order
from mlcd.tracking.query import count, search


# ---------------------------------------------------------------------- parse errors
@pytest.mark.parametrize(
    ("expression", "position", "message"),
    [
        ("metrics.auc >", 13, "expected a value"),
        ("metrics.auc > 'x'", 14, "is a number: compare it with a number"),
        ("metrics.auc 0.9", 12, "expected an operator"),
        ("metircs.auc > 1", 0, "did you mean 'metrics.auc'"),
        ("foo = 1", 0, "unknown attribute 'foo'"),
        ("stauts = 'done'", 0, "did you mean 'status'"),
        ("(metrics.a > 1", 14, "expected ')' to close the '(' at position 0"),
        ("metrics.a > 1)", 13, "unbalanced ')'"),
        ("params.x = 'abc", 11, "unterminated string"),
        ("metrics.a ! 1", 10, "unexpected character '!'"),
        ("metrics.a > 1 metrics.b > 2", 14, "expected 'and', 'or'"),
        ("metrics.a > 1 and", 17, "expected a field"),
        ("status = finished", 9, "text values need quotes: write 'finished'"),
        ("git_dirty = 1", 12, "true or false"),
        ("params.x = null", 11, "'is null'"),
        ("params.x is 3", 12, "expected 'null' after 'is'"),
        ("tags.epoch > 5", 13, "tags are text"),
        ("duration > '1h'", 11, "number of seconds"),
        ("started_at > 'yesterday'", 13, "is not a date"),
        ("metrics.loss like 'a%'", 13, "'like' works on text"),
        ("params.x in 'a'", 12, "expected '(' after 'in'"),
        ("params.x in ('a' 'b')", 17, "expected ',' or ')'"),
        ("metrics. > 1", 0, "needs a key after the dot"),
        ("metrics.a > 1e", 12, "neither a number nor a name"),
    ],
)
def test_malformed_filter_says_what_and_where(expression: str, position: int, message: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(expression)
    assert info.value.position == position
    assert message in str(info.value)
    # the message repeats the expression with a caret under the problem
    assert f"\n  {expression}\n  {' ' * position}^" in str(info.value)


def test_malformed_order_says_where() -> None:
    with pytest.raises(FilterError) as info:
        parse_order("metrics.auc sideways")
    assert info.value.position == 12 and "expected 'asc', 'desc'" in str(info.value)


def test_blank_filter_means_every_run() -> None:
    assert parse_filter(None) is None and parse_filter("   ") is None
    assert parse_order("") == []


# ---------------------------------------------------------------------- meaning
@dataclass
class World:
    store: Store
    ids: dict[str, str]

    def names(self, expression: str | None, order: str | None = None) -> list[str]:
        with self.store.read() as conn:
            found = search(conn, expression, order, limit=None)
        by_id = {v: k for k, v in self.ids.items()}
        names = [by_id[r.id] for r in found]
        return names if order else sorted(names)


@pytest.fixture
def world(store_url: str, open_store) -> Iterator[World]:
    """Four runs with overlapping and missing keys, on SQLite and PostgreSQL."""
    store = open_store(store_url)
    specs = {
        "gbm-main": (
            {"model": "gbm", "lr": 0.1, "layers": 3},
            {"roc_auc": 0.95, "loss": 0.2},
            {"branch": "main", "epoch": "5"},
            "finished",
            "manual",
        ),
        "gbm-dev": (
            {"model": "gbm", "lr": "1e-1"},
            {"roc_auc": 0.85},
            {"branch": "dev"},
            "failed",
            "manual",
        ),
        "rf-main": (
            {"model": "rf", "lr": 0.3, "flag": True},
            {"roc_auc": 0.91, "loss": 0.4},
            {"branch": "main"},
            "finished",
            "pipeline",
        ),
        "bare": ({}, {}, {}, "running", "manual"),
    }
    ids = {}
    with store.write() as conn:
        for index, (name, (params, metrics, tags, status, kind)) in enumerate(specs.items()):
            run_id = runs.create_run(conn, name=name, kind=kind, started_at=1_700_000_000 + index)
            runs.log_params(conn, run_id, params)
            runs.log_metrics(conn, run_id, [runs.MetricPoint(k, v) for k, v in metrics.items()])
            runs.set_tags(conn, run_id, tags)
            if status != "running":
                runs.end_run(conn, run_id, status)
            ids[name] = run_id
    yield World(store, ids)


def test_and_or_not_and_parentheses(world: World) -> None:
    assert world.names("metrics.roc_auc > 0.9 and params.model = 'gbm'") == ["gbm-main"]
    assert world.names("params.model = 'rf' or tags.branch = 'dev'") == ["gbm-dev", "rf-main"]
    assert world.names(
        "(params.model = 'rf' or tags.branch = 'dev') and metrics.roc_auc >= 0.9"
    ) == ["rf-main"]
    assert world.names("not params.model = 'gbm'") == ["bare", "rf-main"]
    assert world.names("METRICS.roc_auc > 0.9 AND NOT tags.branch = 'dev'") == [
        "gbm-main",
        "rf-main",
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("metrics.roc_auc > 0.91", ["gbm-main"]),
        ("metrics.roc_auc >= 0.91", ["gbm-main", "rf-main"]),
        ("metrics.roc_auc < 0.91", ["gbm-dev"]),
        ("metrics.roc_auc <= 0.91", ["gbm-dev", "rf-main"]),
        ("metrics.roc_auc = 0.85", ["gbm-dev"]),
        ("metrics.roc_auc == 0.85", ["gbm-dev"]),
        ("metrics.roc_auc != 0.85", ["gbm-main", "rf-main"]),
        ("metrics.roc_auc <> 0.85", ["gbm-main", "rf-main"]),
        ("metrics.loss < -1", []),
        ("metrics.roc_auc in (0.85, 0.95)", ["gbm-dev", "gbm-main"]),
    ],
)
def test_metric_comparisons(world: World, expression: str, expected: list[str]) -> None:
    assert world.names(expression) == expected


def test_params_compare_as_numbers_or_text_by_the_literal(world: World) -> None:
    # "0.1" and "1e-1" are the same number
    assert world.names("params.lr = 0.1") == ["gbm-dev", "gbm-main"]
    assert world.names("params.lr > 0.2") == ["rf-main"]
    assert world.names("params.lr = '0.1'") == ["gbm-main"]  # text: exactly "0.1"
    assert world.names('params.model = "gbm"') == ["gbm-dev", "gbm-main"]
    assert world.names("params.model in ('rf', 'svm')") == ["rf-main"]
    assert world.names("params.lr in (0.3, 'x')") == ["rf-main"]
    assert world.names("params.flag = true") == ["rf-main"]
    assert world.names("params.model like 'G%'") == ["gbm-dev", "gbm-main"]
    assert world.names("params.model not like 'g%'") == ["rf-main"]


def test_missing_keys_match_no_comparison_but_not_negates_it(world: World) -> None:
    assert world.names("params.layers != 2") == ["gbm-main"]
    assert world.names("metrics.loss != 0.2") == ["rf-main"]
    assert world.names("params.model not in ('gbm')") == ["rf-main"]
    assert world.names("not metrics.loss > 0.3") == ["bare", "gbm-dev", "gbm-main"]
    assert world.names("metrics.loss is null") == ["bare", "gbm-dev"]
    assert world.names("metrics.loss is not null") == ["gbm-main", "rf-main"]
    assert world.names("tags.branch is null") == ["bare"]
    assert world.names("params.nothing = 1 or params.nothing is null") == sorted(world.ids)


def test_tags_are_text_and_numbers_compare_as_their_text(world: World) -> None:
    assert world.names("tags.branch = 'main'") == ["gbm-main", "rf-main"]
    assert world.names("tags.epoch = 5") == ["gbm-main"]
    assert world.names("tags.branch > 'l'") == ["gbm-main", "rf-main"]


def test_attributes_bare_or_prefixed(world: World) -> None:
    assert world.names("status = 'finished'") == ["gbm-main", "rf-main"]
    assert world.names("attributes.status != 'finished'") == ["bare", "gbm-dev"]
    assert world.names("run.kind = 'pipeline'") == ["rf-main"]
    assert world.names("name like 'gbm-%'") == ["gbm-dev", "gbm-main"]
    assert world.names("name in ('bare', 'nope')") == ["bare"]
    assert world.names("ended_at is null") == ["bare"]
    assert world.names("duration >= 0") == ["gbm-dev", "gbm-main", "rf-main"]
    assert world.names("started_at >= 1700000002") == ["bare", "rf-main"]
    assert world.names("started_at > '2023-11-14T22:13:21'") == ["bare", "rf-main"]
    assert world.names("started_at < '2020-01-01'") == []
    assert world.names(f"id = '{world.ids['bare']}'") == ["bare"]
    assert world.names("git_dirty = true") == []


def test_keys_with_other_characters_in_quotes(store_url: str, open_store) -> None:
    store = open_store(store_url)
    with store.write() as conn:
        run_id = runs.create_run(conn)
        runs.log_metrics(conn, run_id, [runs.MetricPoint("val/loss", 0.1)])
        runs.log_metrics(conn, run_id, [runs.MetricPoint("val loss", 0.2)])
        runs.log_params(conn, run_id, {"it's": "quote's"})
    world = World(store, {"r": run_id})
    assert world.names("metrics.val/loss < 0.15") == ["r"]
    assert world.names("metrics.`val/loss` < 0.15") == ["r"]
    assert world.names('metrics."val loss" = 0.2') == ["r"]
    assert world.names("params.`it's` = 'quote''s'") == ["r"]
    assert world.names("params.`it's` = 'quote\\'s'") == ["r"]


def test_order_by_metric_param_and_attribute_with_missing_last(world: World) -> None:
    assert world.names(None, "metrics.roc_auc desc") == ["gbm-main", "rf-main", "gbm-dev", "bare"]
    assert world.names(None, "metrics.roc_auc asc") == ["gbm-dev", "rf-main", "gbm-main", "bare"]
    assert world.names(None, "params.model, name desc") == [
        "gbm-main",
        "gbm-dev",
        "rf-main",
        "bare",
    ]
    assert world.names(None, "params.lr desc, name") == ["rf-main", "gbm-dev", "gbm-main", "bare"]
    assert world.names(None, "started_at") == ["gbm-main", "gbm-dev", "rf-main", "bare"]
    assert world.names(None, "tags.branch") == ["gbm-dev", "rf-main", "gbm-main", "bare"]
    # default: newest first
    assert world.names("", "") == sorted(world.ids)
    with world.store.read() as conn:
        newest = [r.name for r in search(conn)]
    assert newest == ["bare", "rf-main", "gbm-dev", "gbm-main"]


def test_search_returns_data_and_pages(world: World) -> None:
    with world.store.read() as conn:
        first = search(conn, "metrics.roc_auc > 0", "metrics.roc_auc desc", limit=2)
        second = search(conn, "metrics.roc_auc > 0", "metrics.roc_auc desc", limit=2, offset=2)
        assert count(conn, "metrics.roc_auc > 0") == 3
        assert count(conn) == 4
        with pytest.raises(UsageError, match="at least 1"):
            search(conn, limit=0)
    assert [r.name for r in first] == ["gbm-main", "rf-main"]
    assert [r.name for r in second] == ["gbm-dev"]
    top = first[0]
    assert top.params == {"layers": "3", "lr": "0.1", "model": "gbm"}
    assert top.metrics == {"loss": 0.2, "roc_auc": 0.95}
    assert top.tags == {"branch": "main", "epoch": "5"}
    assert top.to_dict()["duration"] is not None


def test_long_param_values_are_found_too(store_url: str, open_store) -> None:
    # Values longer than the indexed prefix length are left out of PostgreSQL's text index;
    # they must still be found by equality and patterns.
    store = open_store(store_url)
    long_value = "feature_" * 500
    with store.write() as conn:
        run_id = runs.create_run(conn)
        runs.log_params(conn, run_id, {"features": long_value, "short": "x"})
        runs.set_tags(conn, run_id, {"note": long_value})
    world = World(store, {"r": run_id})
    assert world.names(f"params.features = '{long_value}'") == ["r"]
    assert world.names("params.features like 'feature_feature%'") == ["r"]
    assert world.names(f"tags.note in ('{long_value}', 'x')") == ["r"]
    assert world.names("params.features != 'x'") == ["r"]


def _many_runs(store: Store) -> Store:
    import random

    rnd = random.Random(7)
    with store.write() as conn:
        for i in range(300):
            run_id = runs.create_run(conn, name=f"r{i}", started_at=1_700_000_000 + i)
            runs.log_params(conn, run_id, {"model": rnd.choice("ab"), "depth": rnd.randint(1, 3)})
            if i % 7:
                runs.log_metrics(conn, run_id, [runs.MetricPoint("auc", rnd.random())])
            runs.set_tags(conn, run_id, {"branch": "main" if i % 3 else "dev"})
    return store


@pytest.fixture
def many_runs(sqlite_url: str, open_store) -> Store:
    """300 runs with overlapping params, metrics and tags."""
    return _many_runs(open_store(sqlite_url))


PLANNED_CASES = [
    "tags.branch = 'main'",
    "tags.branch = 'main' and params.model = 'a'",
    "metrics.auc > 0.5 and params.model = 'a' and tags.branch = 'main'",
    "metrics.auc > 0.98 and tags.branch = 'main'",
    "params.depth = 2 and params.model in ('a', 'b') and metrics.auc < 0.9",
    "params.model like 'a%' and tags.branch != 'dev' and name like 'r1%'",
    "metrics.auc >= 0 and not params.depth = 3 and status = 'running'",
]


def _planned_equals_plain(store: Store, expression: str, limit: int | None) -> None:
    from sqlalchemy import select

    from mlcd.store.tables import runs as runs_table
    from mlcd.tracking.clause import order_clauses, to_sql

    with store.read() as conn:
        planned = [r.id for r in search(conn, expression, limit=limit, with_data=False)]
        stmt = select(runs_table.c.id).where(to_sql(parse_filter(expression)))
        stmt = stmt.order_by(*order_clauses([]))
        plain = [row.id for row in conn.execute(stmt if limit is None else stmt.limit(limit))]
    assert planned == plain, (expression, limit)
    assert plain  # every case matches something


@pytest.mark.parametrize("expression", PLANNED_CASES)
@pytest.mark.parametrize("limit", [1, 10, None])
def test_planned_queries_return_what_the_plain_query_returns(
    many_runs: Store, expression: str, limit: int | None
) -> None:
    # SQLite gets a plan (driving from the narrowest condition, or walking runs newest
    # first); the result must be exactly that of the straightforward IN-subquery form.
    _planned_equals_plain(many_runs, expression, limit)


@pytest.mark.postgres
def test_planned_queries_on_postgresql_return_what_the_plain_query_returns(
    pg_url: str, open_store
) -> None:
    """PostgreSQL gets the same plans, its seeks spelled as scalar subqueries."""
    store = _many_runs(open_store(pg_url))
    for expression in PLANNED_CASES:
        for limit in (1, 10, None):
            _planned_equals_plain(store, expression, limit)
