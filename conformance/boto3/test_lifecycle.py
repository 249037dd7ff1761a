"""Lifecycle configuration through boto3."""

import pytest
from botocore.exceptions import ClientError

RULES = [
    {
        "ID": "expire-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
    },
    {
        "ID": "abort-uploads",
        "Filter": {"Prefix": ""},
        "Status": "Disabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
    },
]


def test_lifecycle_configuration_round_trips_and_deletes(s3, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": RULES})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got == RULES
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"
