"""``mlcd ui`` over HTTP: hosts, origins, tokens, headers, safe downloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlcd.ui.app import safe_filename
from tests.ui.conftest import Ui, start_ui, stop

pytestmark = pytest.mark.xdist_group("ui")


def test_bad_host_is_400(ui: Ui) -> None:
    response = httpx.get(ui.url + "/runs", headers={"host": "evil.example"})
    assert response.status_code == 400


def test_cross_origin_post_is_403_and_changes_nothing(ui: Ui) -> None:
    before = httpx.get(ui.url + "/models/churn").text.count("kind-alias-set")
    for headers in ({"origin": "http://evil.example"}, {"referer": "http://evil.example/x"}, {}):
        response = httpx.post(
            ui.url + "/models/churn/alias",
            data={"alias": "prod", "version": "1"},
            headers={"authorization": f"Bearer {ui.write_token}", **headers},
        )
        assert response.status_code == 403, headers
    assert httpx.get(ui.url + "/models/churn").text.count("kind-alias-set") == before


def test_security_headers_on_every_response(ui: Ui) -> None:
    for path in ("/runs", "/static/ui.js", "/nope"):
        headers = httpx.get(ui.url + path).headers
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in headers["content-security-policy"]


def test_plotly_is_served_gzipped_and_cached(ui: Ui) -> None:
    response = httpx.get(ui.url + "/static/plotly.min.js", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "max-age=31536000" in response.headers["cache-control"]
    assert len(response.content) > 1_000_000  # decoded by httpx: the whole library


def test_download_names_are_made_safe() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("a/b/..") == "artifact"
    assert safe_filename('x"; rm -rf /') == "artifact"
    assert safe_filename('report "final".html') == "report_final_.html"
    assert safe_filename("model.pkl") == "model.pkl"


@pytest.fixture(scope="module")
def exposed(ui: Ui) -> Iterator[str]:
    """The same project's UI bound beyond loopback (0.0.0.0): tokens are required."""
    process, url = start_ui(ui.root, host="0.0.0.0")
    yield url
    stop(process)


def test_beyond_loopback_pages_need_a_read_token_and_writes_a_write_token(
    ui: Ui, exposed: str
) -> None:
    anonymous = httpx.get(exposed + "/runs")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    bad = httpx.get(exposed + "/runs", headers={"authorization": "Bearer mlcd_not-a-token"})
    assert bad.status_code == 303  # a browser is sent to sign in; nothing is shown
    read = {"authorization": f"Bearer {ui.read_token}"}
    assert httpx.get(exposed + "/runs", headers=read).status_code == 200
    same_origin = {"origin": exposed}
    refused = httpx.post(
        exposed + "/models/churn/alias",
        data={"alias": "prod", "version": "1"},
        headers={**read, **same_origin},
    )
    assert refused.status_code == 403 and "need &#39;write&#39;" in refused.text
    nobody = httpx.post(
        exposed + "/models/churn/alias", data={"alias": "prod", "version": "1"}, headers=same_origin
    )
    assert nobody.status_code == 401


def test_login_rejects_a_wrong_token_and_never_redirects_elsewhere(ui: Ui) -> None:
    wrong = httpx.post(
        ui.url + "/login", data={"token": "mlcd_wrong", "next": "/runs"}, headers={"origin": ui.url}
    )
    assert wrong.status_code == 401
    good = httpx.post(
        ui.url + "/login",
        data={"token": ui.read_token, "next": "//evil.example/x"},
        headers={"origin": ui.url},
    )
    assert good.status_code == 303 and good.headers["location"] == "/runs"
    assert "httponly" in good.headers["set-cookie"].lower()
    assert "samesite=strict" in good.headers["set-cookie"].lower()


def test_ui_help_and_missing_project(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlcd"), "ui"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "mlcd init" in result.stderr
    assert "Traceback" not in result.stderr
