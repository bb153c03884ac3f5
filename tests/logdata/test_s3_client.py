"""Which client reads an ``s3://`` log: Arrow's own by default, s3fs when asked; a missing
segment is reported as missing by both."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcd.logdata.segments import S3_CLIENT_ENV, SegmentMissing, locate, open_dataset


@pytest.mark.parametrize("client", ["", "fsspec"])
def test_both_clients_read_a_segment_and_name_a_missing_one(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        S3_CLIENT_ENV: client,
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"client-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"ts": [1.0, 2.0], "prediction": [0, 1]}), sink)
    s3.put_object(Bucket=bucket, Key="log/a.parquet", Body=sink.getvalue().to_pybytes())

    location = locate("/nowhere", f"s3://{bucket}/log/a.parquet")
    native = type(location.fs).__name__ == "S3FileSystem"
    assert native is (client == ""), type(location.fs)
    assert open_dataset(location).to_table().column("prediction").to_pylist() == [0, 1]
    with pytest.raises(SegmentMissing, match="registered but missing"):
        open_dataset(locate("/nowhere", f"s3://{bucket}/log/gone.parquet"))
