"""Object checksums through boto3: x-amz-checksum-* stored, verified, returned."""

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_sha256_checksum_is_stored_and_returned_in_checksum_mode(s3, bucket):
    body = b"checksummed payload " * 1000
    put = s3.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumAlgorithm="SHA256")
    assert put["ChecksumSHA256"] == sha256_b64(body)
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256_b64(body)
    assert head.get("ChecksumType") == "FULL_OBJECT"
    # Without checksum mode, no checksum is sent.
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="sum")
    got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == body and got["ChecksumSHA256"] == sha256_b64(body)


def test_wrong_sha256_checksum_is_bad_digest_and_stores_nothing(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"payload", ChecksumSHA256=sha256_b64(b"other"))
    assert e.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
