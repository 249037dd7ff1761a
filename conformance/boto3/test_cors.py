"""CORS through boto3 and a plain HTTP client: configuration and preflight."""

import pytest
import requests
from botocore.exceptions import ClientError

ORIGIN = "https://app.example"
RULES = [{
    "AllowedOrigins": [ORIGIN],
    "AllowedMethods": ["GET", "PUT"],
    "AllowedHeaders": ["*"],
    "ExposeHeaders": ["ETag"],
    "MaxAgeSeconds": 600,
}]


def test_cors_configuration_round_trips_and_deletes(s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"


def test_preflight_is_answered_from_the_bucket_cors_rules(s3, server, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    url = f"{server[0]}/{bucket}/upload.bin"
    allowed = requests.options(url, timeout=30, headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    })
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "PUT" in allowed.headers["Access-Control-Allow-Methods"]
    assert allowed.headers.get("Access-Control-Max-Age") == "600"
    refused = requests.options(url, timeout=30, headers={
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "PUT",
    })
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
