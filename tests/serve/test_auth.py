"""Tokens, roles, trusted hosts, security headers, request ids and TLS against a real server."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import run_cli
from tests.serve.conftest import Registry, Running, cancer, cancer_model, free_port

from mlcd.config import Serve
from mlcd.serve.auth import Authenticator, static_tokens
from mlcd.store import predictions, tokens

PREDICT = "/v1/models/cancer/predict"


@pytest.fixture
def cancer_registered(registry: Registry) -> Any:
    X, _y = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    return X


def _token(registry: Registry, name: str, role: str, expires_at: float | None = None) -> str:
    with registry.store.write() as conn:
        return tokens.create(conn, name, role, expires_at=expires_at)


def _bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _label(url: str, X: Any, secret: str, **predict: Any) -> httpx.Response:
    """Predict one row to get a request id the server issued, then label it with ``secret``."""
    rows = X.head(1).to_dict(orient="records")
    (issued,) = httpx.post(f"{url}{PREDICT}", json=rows, **predict).json()["request_ids"]
    return httpx.post(
        f"{url}/v1/feedback", json={"request_id": issued, "label": 1}, headers=_bearer(secret)
    )


def _public(serve: Callable[..., Running], **settings: Any) -> Running:
    """A server that believes it is bound to 0.0.0.0 (beyond loopback); reached on 127.0.0.1."""
    return serve(settings=Serve(host="0.0.0.0", poll_interval_s=0.2, **settings))


def _failures(server: Running) -> dict[str, float]:
    out = {}
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith("mlcd_serve_auth_failures_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def _stored(registry: Registry) -> int:
    from sqlalchemy import func, select

    from mlcd.store.tables import feedback

    with registry.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(feedback)).scalar_one())


def test_feedback_without_a_token_is_401_and_nothing_is_stored(
    registry: Registry, serve: Callable[..., Running], cancer_registered: Any
) -> None:
    # Guards against anyone who reaches the port feeding false labels (and so firing the
    # decay trigger, which reads them) -- issue 12.
    server = serve()
    X = cancer_registered
    ids = server.client.post(PREDICT, json=X.head(2).to_dict(orient="records")).json()[
        "request_ids"
    ]
    labels = [{"request_id": i, "label": 0} for i in ids]
    bare = httpx.post(f"{server.url}/v1/feedback", json=labels)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith("Bearer")
    assert bare.json()["status"] == 401 and "mlcd tokens create" in bare.json()["error"]
    wrong = httpx.post(f"{server.url}/v1/feedback", json=labels, headers=_bearer("mlcd_nope"))
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = httpx.post(
        f"{server.url}/v1/feedback", json=labels, headers={"authorization": "Basic YTpi"}
    )
    assert basic.status_code == 401
    assert _stored(registry) == 0
    with registry.store.read() as conn:
        assert predictions.feedback_for(conn, ids) == {}
    failures = _failures(server)
    assert failures["missing"] == 1 and failures["invalid"] == 1 and failures["malformed"] == 1
    accepted = server.client.post("/v1/feedback", json=labels)  # the fixture's feedback token
    assert accepted.status_code == 200 and _stored(registry) == 2


def test_a_predict_token_on_feedback_is_403(
    registry: Registry, serve: Callable[..., Running], cancer_registered: Any
) -> None:
    server = serve()
    secret = _token(registry, "frontend", "predict")
    response = httpx.post(
        f"{server.url}/v1/feedback", json={"request_id": "r", "label": 1}, headers=_bearer(secret)
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "token 'frontend' has the role 'predict'; this endpoint needs 'feedback'",
        "status": 403,
    }
    assert _failures(server)["forbidden"] == 1 and _stored(registry) == 0
    admin = _token(registry, "ops", "admin")
    assert _label(server.url, cancer_registered, admin).status_code == 200


def test_revoked_and_expired_tokens_are_401(
    registry: Registry, serve: Callable[..., Running], cancer_registered: Any
) -> None:
    auth = Authenticator(registry.store, ttl_s=0.2)
    server = serve(auth=auth)
    secret = _token(registry, "labeller", "feedback")
    X = cancer_registered
    assert _label(server.url, X, secret).status_code == 200
    with registry.store.write() as conn:
        tokens.revoke(conn, "labeller")
    deadline = time.monotonic() + 10  # revocation takes effect within the cache time
    while (response := _label(server.url, X, secret)).status_code != 401:
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, "the revoked token is still accepted"
        time.sleep(0.05)
    assert "revoked" in response.json()["error"]
    expiring = _token(registry, "short", "feedback", expires_at=time.time() + 0.5)
    deadline = time.monotonic() + 10
    while (response := _label(server.url, X, expiring)).status_code != 401:
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, "the expired token is still accepted"
        time.sleep(0.05)
    assert "expired" in response.json()["error"]
    failures = _failures(server)
    assert failures["revoked"] >= 1 and failures["expired"] >= 1


def test_predict_is_open_on_loopback_and_needs_a_token_beyond_it(
    registry: Registry, serve: Callable[..., Running], cancer_registered: Any
) -> None:
    X = cancer_registered
    rows = X.head(1).to_dict(orient="records")
    local = serve()
    assert httpx.post(f"{local.url}{PREDICT}", json=rows).status_code == 200
    public = _public(serve)
    for path in (PREDICT, "/v2/models/cancer/infer"):
        refused = httpx.post(f"{public.url}{path}", json=rows)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{public.url}/v2/models/cancer").status_code == 401
    predictor = _token(registry, "frontend", "predict")
    answered = httpx.post(f"{public.url}{PREDICT}", json=rows, headers=_bearer(predictor))
    assert answered.status_code == 200 and len(answered.json()["predictions"]) == 1
    reader = _token(registry, "dashboard", "read")
    assert httpx.get(f"{public.url}/v2/models/cancer", headers=_bearer(reader)).status_code == 200
    assert (
        httpx.post(f"{public.url}{PREDICT}", json=rows, headers=_bearer(reader)).status_code == 403
    )
    # A feedback token is not a predict token.
    assert public.client.post(PREDICT, json=rows).status_code == 403
    for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/v2"):
        assert httpx.get(f"{public.url}{open_path}").status_code == 200, open_path
    opened = _public(serve, public_predict=True)
    assert httpx.post(f"{opened.url}{PREDICT}", json=rows).status_code == 200
    assert (
        httpx.post(f"{opened.url}/v1/feedback", json={"request_id": "r", "label": 1}).status_code
        == 401
    )


def test_static_tokens_from_the_environment(
    registry: Registry, serve: Callable[..., Running], cancer_registered: Any
) -> None:
    admin, predict = "a" * 16 + "-admin-secret", "p" * 16 + "-predict-secret"
    static = static_tokens({"MLCD_SERVE_TOKEN": admin, "MLCD_PREDICT_TOKEN": predict})
    server = serve(auth=Authenticator(registry.store, static), settings=Serve(host="0.0.0.0"))
    body = {"request_id": "r", "label": 1}
    X = cancer_registered
    with_predict = {"headers": _bearer(predict)}
    assert _label(server.url, X, admin, **with_predict).status_code == 200
    assert (
        httpx.post(f"{server.url}/v1/feedback", json=body, headers=_bearer(predict)).status_code
        == 403
    )
    rows = cancer_registered.head(1).to_dict(orient="records")
    assert (
        httpx.post(f"{server.url}{PREDICT}", json=rows, headers=_bearer(predict)).status_code == 200
    )
    from mlcd.errors import ConfigError

    with pytest.raises(ConfigError, match="shorter than 24"):
        static_tokens({"MLCD_FEEDBACK_TOKEN": "secret"})


def test_the_token_name_is_the_actor(registry: Registry) -> None:
    import asyncio

    from mlcd.serve.auth import AuthGate, current_actor

    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((current_actor.get(), scope["state"]["actor"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    secret = _token(registry, "labeller", "feedback")
    gate = AuthGate(inner, Authenticator(registry.store), open_predict=True)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/feedback",
             "headers": [(b"authorization", f"Bearer {secret}".encode())]}  # fmt: skip
    asyncio.run(gate(scope, receive, send))
    assert seen == [("labeller", "labeller")] and sent[0]["status"] == 204
    assert current_actor.get() is None


def test_bad_host_is_400_and_allowed_hosts_extend(
    registry: Registry, serve: Callable[..., Running], cancer_registered: Any
) -> None:
    # Guards against DNS rebinding: a web page on evil.example resolving to 127.0.0.1.
    server = serve(settings=Serve(allowed_hosts=["models.internal"], poll_interval_s=0.2))
    bad = server.client.get("/v2/health/live", headers={"host": "evil.example"})
    assert bad.status_code == 400
    assert bad.headers["x-content-type-options"] == "nosniff"
    assert (
        server.client.get("/v2/health/live", headers={"host": "models.internal:80"}).status_code
        == 200
    )
    assert server.client.get("/v2/health/live", headers={"host": "localhost"}).status_code == 200


def test_security_headers_on_every_response(
    serve: Callable[..., Running], cancer_registered: Any
) -> None:
    server = serve()
    rows = cancer_registered.head(1).to_dict(orient="records")
    answers = [
        server.client.post(PREDICT, json=rows),
        server.client.post("/v2/models/cancer/infer", content=b"{"),
        server.client.get("/v2/health/ready"),
        server.client.get("/metrics"),
        server.client.get("/nowhere"),
        httpx.post(f"{server.url}/v1/feedback", json={}),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    docs = server.client.get("/docs")
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_client_request_ids_only_when_well_formed(
    serve: Callable[..., Running], cancer_registered: Any
) -> None:
    server = serve()
    row = cancer_registered.head(1).to_dict(orient="records")
    good = server.client.post(PREDICT, json=row, headers={"x-request-id": "order-42.a_b"})
    assert good.json()["request_ids"] == ["order-42.a_b"]
    for hostile in ("a" * 49, "../../etc", "x y", "<script>", "é"):
        answer = server.client.post(
            PREDICT, json=row, headers={"x-request-id": hostile.encode("utf-8")}
        )
        (given,) = answer.json()["request_ids"]
        assert given != hostile and len(given) <= 48 and given.isascii(), hostile


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_mlcd_serve_over_tls(project_with_model: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    bad = run_cli(["serve", "cancer", "--ssl-certfile", str(cert)], cwd=project_with_model)
    assert bad.returncode == 2 and "go together" in bad.stderr
    weak = run_cli(["serve", "cancer"], cwd=project_with_model, env={"MLCD_SERVE_TOKEN": "short"})
    assert weak.returncode == 2 and "MLCD_SERVE_TOKEN is shorter than 24" in weak.stderr
    port = free_port()
    env = {**os.environ, "MLCD_FEEDBACK_TOKEN": "f" * 32}
    output = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer", "--port", str(port),
         "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning"],
        cwd=project_with_model, env=env, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "the TLS server did not get ready"
                time.sleep(0.1)
            ready = client.get("/v2/health/ready")
            assert ready.headers["strict-transport-security"].startswith("max-age=")
            rows = cancer()[0].head(1).to_dict(orient="records")
            (issued,) = client.post(PREDICT, json=rows).json()["request_ids"]
            body = {"request_id": issued, "label": 1}
            assert client.post("/v1/feedback", json=body).status_code == 401
            ok = client.post("/v1/feedback", json=body, headers=_bearer("f" * 32))
            assert ok.status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5)
    finally:
        process.terminate()
        process.wait(30)
        output.close()


@pytest.fixture
def project_with_model(project: Path) -> Path:
    """A project made by ``mlcd init`` with cancer@champion registered."""
    from mlcd.project import Project

    X, _y = cancer()
    with Project.open(project) as opened:
        Registry(project, opened.store, opened.objects).register(
            "cancer", cancer_model(), X.head(50)
        )
    return project


def test_mlcd_serve_on_all_interfaces_needs_a_predict_token(project_with_model: Path) -> None:
    # The real CLI bound to 0.0.0.0 (reached here through 127.0.0.1): predict is closed.
    made = run_cli(["tokens", "create", "web", "--role", "predict"], cwd=project_with_model)
    secret = made.stdout.strip()
    port = free_port()
    log = project_with_model / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer", "--host", "0.0.0.0",
             "--port", str(port), "--log-level", "warning"],
            cwd=project_with_model, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not get ready"
                time.sleep(0.1)
            rows = cancer()[0].head(1).to_dict(orient="records")
            assert httpx.post(f"{url}{PREDICT}", json=rows).status_code == 401
            answered = httpx.post(f"{url}{PREDICT}", json=rows, headers=_bearer(secret))
            assert answered.status_code == 200
        finally:
            process.terminate()
            process.wait(30)
    assert "predict needs a token with the 'predict' role" in log.read_text()
