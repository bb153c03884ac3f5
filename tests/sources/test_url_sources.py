"""An S3 prefix as a stage input, through a real S3 API (moto) on 127.0.0.1 and s3fs.

The listing (sizes, ETags) is the cheap check: an unchanged prefix is not downloaded again,
a changed object re-runs the stage, and a local copy edited by hand is fetched again.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.pipeline.conftest import Cli, calls, outcomes

pytestmark = [pytest.mark.s3, pytest.mark.xdist_group("s3")]

CONFIG = """
stages:
  count:
    cmd: python count.py
    deps: [count.py]
    sources:
      - path: data/events
        url: s3://BUCKET/events/
        options: {client_kwargs: {endpoint_url: "${S3_ENDPOINT}"}, skip_instance_cache: true}
    outs: [counts.json]
"""

COUNT = """
import json, pathlib
files = sorted(p.name for p in pathlib.Path("data/events").rglob("*.csv"))
lines = sum(len(p.read_text().splitlines()) for p in pathlib.Path("data/events").rglob("*.csv"))
json.dump({"files": files, "lines": lines}, open("counts.json", "w"))
open("calls.log", "a").write("count\\n")
"""


def test_an_s3_prefix_is_fetched_when_it_changes_and_only_then(
    make_project: Cli, mlcd: Cli, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    endpoint = s3_endpoint
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_ENDPOINT": endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = f"mlcd-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    for day in ("2026-12-01", "2026-12-02"):
        s3.put_object(Bucket=bucket, Key=f"events/{day}.csv", Body=b"a,b\n1,2\n3,4\n")
    root = make_project(CONFIG.replace("BUCKET", bucket), {"count.py": COUNT})

    def run() -> dict[str, str]:
        result = mlcd(root, "run", "--json", env=env)
        assert result.returncode == 0, result.stderr
        return outcomes(json.loads(result.stdout))

    assert run() == {"count": "ran"}
    counts = json.loads((root / "counts.json").read_text())
    assert counts == {"files": ["2026-12-01.csv", "2026-12-02.csv"], "lines": 6}
    assert run() == {"count": "skipped"}  # same listing: nothing downloaded, nothing runs

    s3.put_object(Bucket=bucket, Key="events/2026-12-03.csv", Body=b"a,b\n5,6\n")
    assert run() == {"count": "ran"}
    assert json.loads((root / "counts.json").read_text())["lines"] == 8

    # A local copy edited by hand is not trusted: fetched again, same content, nothing runs.
    (root / "data" / "events" / "2026-12-01.csv").write_text("tampered\n")
    assert run() == {"count": "skipped"}
    assert (root / "data" / "events" / "2026-12-01.csv").read_bytes() == b"a,b\n1,2\n3,4\n"
    assert calls(root) == ["count", "count"]

    missing = make_project(
        CONFIG.replace("BUCKET", bucket).replace("events/", "nothing-here/"),
        {"count.py": COUNT},
        name="missing",
    )
    nothing = mlcd(missing, "run", env=env)
    assert nothing.returncode != 0 and "nothing at s3://" in nothing.stderr
