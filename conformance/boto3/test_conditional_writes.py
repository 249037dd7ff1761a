"""Conditional writes through boto3: If-None-Match and If-Match on PutObject."""

import pytest
from botocore.exceptions import ClientError


def test_second_put_with_if_none_match_star_is_precondition_failed(s3, bucket):
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_put_with_if_match_replaces_only_the_expected_etag(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="cas", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="cas", Body=b"lost", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="cas", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"v2"
