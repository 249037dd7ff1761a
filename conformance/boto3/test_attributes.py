"""GetObjectAttributes through boto3."""

import base64
import hashlib
import os
import zlib

import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024


def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_get_object_attributes_reports_etag_size_checksum_and_storage_class(s3, bucket):
    body = b"attributes " * 500
    s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="SHA256")
    out = s3.get_object_attributes(Bucket=bucket, Key="one",
                                   ObjectAttributes=["ETag", "Checksum", "ObjectSize", "StorageClass"])
    # GetObjectAttributes is the one answer whose ETag S3 leaves unquoted.
    assert out["ETag"] == hashlib.md5(body).hexdigest()
    assert out["ObjectSize"] == len(body)
    assert out["StorageClass"] == "STANDARD"
    assert out["Checksum"]["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert "ObjectParts" not in out
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ObjectSize"])
    assert e.value.response["Error"]["Code"] == "NoSuchKey"


def test_get_object_attributes_pages_the_parts_of_a_multipart_object(s3, bucket):
    pieces = [os.urandom(5 * MIB), os.urandom(1234)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="multi", ChecksumAlgorithm="CRC32")["UploadId"]
    parts = []
    for n, piece in enumerate(pieces, start=1):
        out = s3.upload_part(Bucket=bucket, Key="multi", UploadId=up, PartNumber=n, Body=piece,
                             ChecksumAlgorithm="CRC32")
        assert out["ChecksumCRC32"] == crc32_b64(piece)
        parts.append({"PartNumber": n, "ETag": out["ETag"], "ChecksumCRC32": out["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=up, MultipartUpload={"Parts": parts})

    first = s3.get_object_attributes(Bucket=bucket, Key="multi", ObjectAttributes=["ObjectParts"],
                                     MaxParts=1)["ObjectParts"]
    assert first["TotalPartsCount"] == 2
    assert first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 1
    assert [(p["PartNumber"], p["Size"], p["ChecksumCRC32"]) for p in first["Parts"]] == [
        (1, 5 * MIB, crc32_b64(pieces[0]))]
    rest = s3.get_object_attributes(Bucket=bucket, Key="multi", ObjectAttributes=["ObjectParts"],
                                    MaxParts=1, PartNumberMarker=1)["ObjectParts"]
    assert rest["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(2, 1234)]
