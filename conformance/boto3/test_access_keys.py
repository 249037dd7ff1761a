"""Access keys made with `flexdrive admin key`, used through boto3."""

import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import make_client


def test_admin_created_key_owns_its_bucket_and_reads_others_only_once_allowed(s3, server, bucket, admin):
    created = admin("key", "create", "boto3-app")
    key = make_client(server[0], created["access_key"], created["secret_key"])
    own = "k-" + uuid.uuid4().hex[:20]
    try:
        key.create_bucket(Bucket=own)
        key.put_object(Bucket=own, Key="mine.txt", Body=b"mine")
        assert key.get_object(Bucket=own, Key="mine.txt")["Body"].read() == b"mine"
        assert [b["Name"] for b in key.list_buckets()["Buckets"]] == [own]

        s3.put_object(Bucket=bucket, Key="root.txt", Body=b"root")
        with pytest.raises(ClientError) as e:
            key.get_object(Bucket=bucket, Key="root.txt")
        assert e.value.response["Error"]["Code"] == "AccessDenied"

        admin("key", "allow", created["access_key"], "--bucket", bucket, "--read")
        assert key.get_object(Bucket=bucket, Key="root.txt")["Body"].read() == b"root"
        with pytest.raises(ClientError) as e:
            key.put_object(Bucket=bucket, Key="new.txt", Body=b"x")
        assert e.value.response["Error"]["Code"] == "AccessDenied"

        key.delete_object(Bucket=own, Key="mine.txt")
        key.delete_bucket(Bucket=own)
    finally:
        admin("key", "delete", created["access_key"])
