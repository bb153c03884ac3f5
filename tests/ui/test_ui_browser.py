"""``mlcd ui`` in a real browser: every page, URL state, sorting, compare, an alias move with a
write token, and a run name that tries to run a script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.ui.conftest import RUNS, XSS_NAME, Ui, mlcd

pytestmark = pytest.mark.xdist_group("ui")


class Watch:
    """Console errors, dialogs and requests that leave 127.0.0.1, for one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request: Any) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith("http") and host != "127.0.0.1":
            self.foreign.append(request.url)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.foreign == [], self.foreign


def _runs(ui: Ui, *args: str) -> list[dict[str, Any]]:
    return json.loads(mlcd(ui.root, "runs", "list", *args, "--json").stdout)


def test_every_page_renders_without_errors_or_outside_requests(
    ui: Ui, browser: Any, shots: Path
) -> None:
    newest = _runs(ui, "--limit", "2")
    pages = {
        "runs": "/runs",
        "run": f"/runs/{newest[0]['id']}",
        "compare": f"/compare?run={newest[0]['id']}&run={newest[1]['id']}",
        "models": "/models",
        "model": "/models/churn",
        "version": "/models/churn/1",
        "monitoring": "/monitoring",
        "timeline": "/timeline",
        "pipeline": "/pipeline",
    }
    context = browser.new_context()
    for name, path in pages.items():
        page = context.new_page()
        watch = Watch(page)
        response = page.goto(ui.url + path, wait_until="networkidle")
        assert response is not None and response.status == 200, (name, response)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        watch.clean()
        page.close()
    context.close()


def test_filter_narrows_the_table_and_survives_a_reload_in_a_fresh_browser(
    ui: Ui, browser: Any
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(ui.url + "/runs")
    assert page.locator("tr.run-row").count() == 50  # the first page of 120
    page.fill("#filter", "metrics.roc_auc > 0.9 and params.model = 'gbm'")
    page.press("#filter", "Enter")
    page.wait_for_url("**filter=*")
    expected = _runs(ui, "-f", "metrics.roc_auc > 0.9 and params.model = 'gbm'", "-n", "500")
    assert 0 < len(expected) < 50
    names = sorted(page.locator("tr.run-row td.name").all_inner_texts())
    assert names == sorted(r["name"] for r in expected)
    url = page.url
    context.close()

    fresh = browser.new_context()
    again = fresh.new_page()
    again.goto(url)
    assert again.locator("#filter").input_value() == "metrics.roc_auc > 0.9 and params.model = 'gbm'"
    assert again.locator("tr.run-row").count() == len(expected)
    fresh.close()


def test_a_bad_filter_shows_the_caret(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    page.goto(ui.url + "/runs?filter=metrics.roc_auc+%3E")
    error = page.locator("#filter-error")
    assert "found the end of the filter" in error.inner_text()
    assert error.locator("pre").inner_text().endswith("^")
    page.close()


def test_sorting_by_a_metric_is_right_across_every_page(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    page.goto(ui.url + "/runs?col=metrics.roc_auc")
    page.click("th a.sort:text('metrics.roc_auc')")
    page.wait_for_url("**order=metrics.roc_auc*")
    _scroll_to_the_end(page)  # htmx fetches the next page when the last row shows
    cells = page.locator("tr.run-row td.num").all_inner_texts()
    shown = [float(v) for v in cells if v]  # runs without the metric (the pipeline's) sort last
    assert len(shown) == RUNS and all(not v for v in cells[len(shown):])
    everything = sorted(
        (r["metrics"]["roc_auc"] for r in _runs(ui, "-n", "500") if "roc_auc" in r["metrics"]),
        reverse=True,
    )
    assert shown == pytest.approx(everything)
    page.close()


def test_two_runs_compared_show_both_curves(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    watch = Watch(page)
    page.goto(ui.url + "/runs?filter=kind+%3D+%27manual%27")  # the logged runs, with curves
    boxes = page.locator("tr.run-row input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-button")
    page.wait_for_url("**/compare?*")
    page.wait_for_selector(".chart[data-metric=loss] .plot-container")
    traces = page.evaluate("document.querySelector('.chart[data-metric=loss]').data.length")
    assert traces == 2
    assert page.locator("#diff-table tr.differs").count() >= 1
    watch.clean()
    page.close()


def test_alias_move_with_a_write_token_lands_in_the_audit_history(ui: Ui, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(ui.url + "/login?next=/models/churn")
    page.fill("#token", ui.write_token)
    page.click("button[type=submit]")
    page.wait_for_url("**/models/churn")
    page.fill("#alias", "staging")
    page.select_option("#version", "2")
    page.fill("#reason", "ui test")
    page.click("#move")
    page.wait_for_url("**/models/churn?message=*")
    assert "staging -> 2: moved" in page.locator("#message").inner_text()
    row = page.locator("#events tr.kind-alias-set").first
    assert "ui-writer" in row.locator("td.actor").inner_text()
    assert "ui test" in row.inner_text()
    # the version page shows the evaluation the gates made, inline, and the signature
    page.goto(ui.url + "/models/churn/2")
    assert "passed the gates of staging" in page.locator("#evaluation-verdict").inner_text()
    assert page.locator("#signature td").first.inner_text() == "a"
    context.close()


def test_a_run_named_like_a_script_runs_nothing(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    watch = Watch(page)
    page.goto(ui.url + "/runs?filter=" + "name+%3D+%27%3Cscript%3Ealert(1)%3C%2Fscript%3E%27")
    assert page.locator("tr.run-row td.name").first.inner_text() == XSS_NAME
    page.locator("tr.run-row a").first.click()
    page.wait_for_selector("#run-name")
    assert page.locator("#run-name").inner_text() == XSS_NAME
    watch.clean()
    page.close()


def test_monitoring_passes_are_charted_over_time(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    watch = Watch(page)
    page.goto(ui.url + "/monitoring")
    page.wait_for_selector(".monitor-chart[data-part=columns] .plot-container")
    traces = page.evaluate(
        "document.querySelector('.monitor-chart[data-part=columns]').data.map(t => t.name)"
    )
    assert {"a", "b", "c"} <= set(traces)  # one line per column of the model
    points = page.evaluate("document.querySelector('.monitor-chart[data-part=share]').data[0].x")
    assert len(points) == 2
    assert page.locator("#events tr.kind-monitor-pass").count() == 2
    watch.clean()
    page.close()


def _scroll_to_the_end(page: Any) -> None:
    for _ in range(10):
        if page.locator("tr.more").count() == 0:
            return
        count = page.locator("tr.run-row").count()
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        for _ in range(100):  # the CSP forbids eval, so wait_for_function cannot be used
            if page.locator("tr.run-row").count() > count:
                break
            page.wait_for_timeout(100)


def test_scrolling_the_default_order_shows_every_run_once(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    page.goto(ui.url + "/runs")
    _scroll_to_the_end(page)
    shown = [href.rsplit("/", 1)[-1] for href in
             page.locator("tr.run-row td:nth-child(2) a").evaluate_all(
                 "links => links.map(a => a.getAttribute('href'))")]  # fmt: skip
    everything = [r["id"] for r in _runs(ui, "-n", "500")]
    assert shown == everything  # newest first, keyset pages: none twice, none missing
    page.close()


def test_the_pipeline_page_shows_each_stage_and_its_last_run(ui: Ui, browser: Any) -> None:
    page = browser.new_page()
    page.goto(ui.url + "/pipeline")
    row = page.locator("#stages tr", has_text="hello")
    assert "up to date" in row.inner_text()
    page.click("#stages td.last-run a")
    page.wait_for_url("**/runs/*")
    assert page.locator("h1").inner_text().startswith("Run ")
    page.close()
