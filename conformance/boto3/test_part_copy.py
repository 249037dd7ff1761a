"""UploadPartCopy through boto3: parts copied from ranges of other objects."""

import base64
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024


def test_upload_part_copy_builds_an_object_from_ranges_of_another(s3, bucket):
    src = os.urandom(7 * MIB + 11)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="copied", ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for n, (first, last) in enumerate([(0, 5 * MIB - 1), (5 * MIB, len(src) - 1)], start=1):
        out = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=up, PartNumber=n,
                                  CopySource={"Bucket": bucket, "Key": "src"},
                                  CopySourceRange=f"bytes={first}-{last}")
        result = out["CopyPartResult"]
        piece = src[first:last + 1]
        assert result["ETag"] == '"%s"' % hashlib.md5(piece).hexdigest()
        assert result["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(piece).digest()).decode()
        parts.append({"PartNumber": n, "ETag": result["ETag"], "ChecksumSHA256": result["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=up, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == src


def test_upload_part_copy_refuses_a_range_outside_the_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    source = {"Bucket": bucket, "Key": "small"}
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1,
                            CopySource=source, CopySourceRange="bytes=0-10")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1, CopySource=source,
                            CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.list_parts(Bucket=bucket, Key="dst", UploadId=up).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="dst", UploadId=up)
