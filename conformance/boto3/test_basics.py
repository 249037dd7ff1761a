"""S3 basics through boto3 with its default settings (checksums on)."""

import hashlib
import os

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import make_client

MIB = 1024 * 1024


def error_code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def test_bucket_is_listed_and_headed_and_deleted(s3, bucket):
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket in names
    s3.head_bucket(Bucket=bucket)
    # us-east-1: creating a bucket you already own succeeds (S3's legacy rule).
    s3.create_bucket(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)


def test_object_round_trips_with_metadata(s3, bucket):
    body = os.urandom(3 * MIB + 5)
    put = s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=body,
                        ContentType="application/x-test", Metadata={"who": "boto3"})
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="dir/obj.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"who": "boto3"}
    head = s3.head_object(Bucket=bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(body)


def test_missing_key_and_bucket_give_s3_errors(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket + "-missing", Key="nope")
    assert error_code(e) == "NoSuchBucket"


def test_ranged_get_returns_the_range(s3, bucket):
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=1000-1999")
    assert got["ContentRange"] == "bytes 1000-1999/100000"
    assert got["Body"].read() == body[1000:2000]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=200000-")
    assert error_code(e) == "InvalidRange"


def test_paginator_lists_every_key_once_in_order(s3, bucket):
    keys = sorted(f"k/{i:03d}" for i in range(25))
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 10})
    listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert listed == keys
    v1 = s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 7})
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == keys


def test_delimiter_gives_common_prefixes(s3, bucket):
    for k in ["a/1", "a/2", "b/1", "c"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    out = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/", "b/"]
    assert [o["Key"] for o in out["Contents"]] == ["c"]


def test_special_keys_round_trip_through_listings(s3, bucket):
    keys = ["plus+sign", "space key", "naïve café", "データ", "percent%20", "tilde~", "q?mark", "amp&er"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed) == sorted(keys)
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()


def test_multipart_upload_file_assembles_parts(s3, bucket, tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(21 * MIB + 3)
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_file(str(path), bucket, "big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ETag"].endswith('-5"')
    back = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(back), Config=config)
    assert back.read_bytes() == data


def test_multipart_part_too_small_is_entity_too_small(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=1, Body=b"a" * 1024)
    p2 = s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=2, Body=b"b" * 1024)
    parts = [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up,
                                     MultipartUpload={"Parts": parts})
    assert error_code(e) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=up)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="m", UploadId=up)
    assert error_code(e) == "NoSuchUpload"


def test_copy_object_with_replaced_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", Metadata={"v": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="text/plain")
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {"v": "2"}
    assert head["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"payload"


def test_delete_objects_reports_each_key(s3, bucket):
    for k in ["x", "y"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x"}, {"Key": "y"}, {"Key": "z"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["x", "y", "z"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_presigned_url_works_with_a_plain_http_client(s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared.txt", Body=b"hello presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.txt"},
                                    ExpiresIn=300)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"hello presigned"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up.txt"},
                                        ExpiresIn=300)
    r = requests.put(put_url, data=b"uploaded", timeout=30)
    assert r.status_code == 200
    assert s3.get_object(Bucket=bucket, Key="up.txt")["Body"].read() == b"uploaded"


def test_sigv2_signed_requests_work_on_buckets_and_objects(server):
    endpoint, access, secret = server
    v2 = make_client(endpoint, access, secret, signature_version="s3")
    name = "v2-" + os.urandom(6).hex()
    v2.create_bucket(Bucket=name)
    v2.head_bucket(Bucket=name)
    v2.put_object(Bucket=name, Key="k", Body=b"signed with v2")
    assert [o["Key"] for o in v2.list_objects(Bucket=name)["Contents"]] == ["k"]
    assert v2.get_bucket_versioning(Bucket=name).get("Status") is None
    url = v2.generate_presigned_url("list_objects", Params={"Bucket": name}, ExpiresIn=300)
    assert requests.get(url, timeout=30).status_code == 200
    v2.delete_object(Bucket=name, Key="k")
    v2.delete_bucket(Bucket=name)


def test_wrong_secret_is_signature_does_not_match(server):
    endpoint, access, _ = server
    bad = make_client(endpoint, access, "wrong-secret")
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert error_code(e) == "SignatureDoesNotMatch"
    unknown = make_client(endpoint, "AKIANOSUCHKEY", "whatever")
    with pytest.raises(ClientError) as e:
        unknown.list_buckets()
    assert error_code(e) == "InvalidAccessKeyId"
