"""Bucket versioning through boto3: version ids, reads by id, delete markers."""

import pytest
from botocore.exceptions import ClientError


def enable_versioning(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_enabled_versioning_lists_every_version_and_reads_each_by_id(s3, bucket):
    enable_versioning(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="doc", Body=b"second")["VersionId"]
    assert v1 and v2 and v1 != v2
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["VersionId"]: v["IsLatest"] for v in versions} == {v1: False, v2: True}
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)["Body"].read() == b"first"
    got = s3.get_object(Bucket=bucket, Key="doc")
    assert got["Body"].read() == b"second" and got["VersionId"] == v2


def test_delete_without_version_id_adds_a_delete_marker_that_hides_the_key(s3, bucket):
    enable_versioning(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"kept")["VersionId"]
    deleted = s3.delete_object(Bucket=bucket, Key="doc")
    assert deleted["DeleteMarker"] is True
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="doc")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    listed = s3.list_object_versions(Bucket=bucket)
    markers = listed["DeleteMarkers"]
    assert [(m["VersionId"], m["IsLatest"]) for m in markers] == [(deleted["VersionId"], True)]
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)["Body"].read() == b"kept"
    # Deleting the marker by its id brings the object back.
    s3.delete_object(Bucket=bucket, Key="doc", VersionId=deleted["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"kept"
