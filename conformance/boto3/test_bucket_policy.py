"""Bucket policies and Public Access Block through boto3."""

import json
import uuid

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from conftest import make_client


def _policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _public_read(bucket):
    return _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*"})


def _code(call, **kwargs):
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _anonymous(server):
    return make_client(server[0], None, None, signature_version=UNSIGNED)


def test_bucket_policy_round_trips_and_its_status_says_public(s3, bucket):
    assert _code(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    text = _public_read(bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == text
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    s3.delete_bucket_policy(Bucket=bucket)
    assert _code(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::x:root"}, "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::{b}"},
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/*"},
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{b}/*",
     "Condition": {"StringKindaEquals": {"s3:prefix": "a"}}},
    {"Effect": "Sometimes", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{b}/*"},
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{b}/*"},
], ids=["allow-with-notprincipal", "other-bucket", "unknown-operator", "bad-effect", "no-principal"])
def test_malformed_policies_are_refused(s3, bucket, statement):
    text = json.dumps({"Version": "2012-10-17", "Statement": [statement]}).replace("{b}", bucket)
    assert _code(s3.put_bucket_policy, Bucket=bucket, Policy=text) == ("MalformedPolicy", 400)


def test_public_get_object_policy_lets_anonymous_clients_read(s3, server, bucket):
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"<p>hello</p>")
    anon = _anonymous(server)
    assert _code(anon.get_object, Bucket=bucket, Key="index.html")[1] == 403
    s3.put_bucket_policy(Bucket=bucket, Policy=_public_read(bucket))
    assert anon.get_object(Bucket=bucket, Key="index.html")["Body"].read() == b"<p>hello</p>"
    assert _code(anon.list_objects_v2, Bucket=bucket)[1] == 403
    assert _code(anon.put_object, Bucket=bucket, Key="x", Body=b"x")[1] == 403
    s3.delete_bucket_policy(Bucket=bucket)


def test_deny_overrides_the_owner_key_but_not_its_policy_management(server, admin):
    created = admin("key", "create", "boto3-policy-owner")
    owner = make_client(server[0], created["access_key"], created["secret_key"])
    name = "p-" + uuid.uuid4().hex[:20]
    try:
        owner.create_bucket(Bucket=name)
        owner.put_object(Bucket=name, Key="keep", Body=b"1")
        owner.put_bucket_policy(Bucket=name, Policy=_policy(
            {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::flexdrive:user/{created['name']}"},
             "Action": ["s3:DeleteObject", "s3:GetBucketPolicy"], "Resource": [f"arn:aws:s3:::{name}/*",
                                                                             f"arn:aws:s3:::{name}"]}))
        assert _code(owner.delete_object, Bucket=name, Key="keep") == ("AccessDenied", 403)
        assert owner.get_object(Bucket=name, Key="keep")["Body"].read() == b"1"
        assert "Deny" in owner.get_bucket_policy(Bucket=name)["Policy"]
        owner.delete_bucket_policy(Bucket=name)
        owner.delete_object(Bucket=name, Key="keep")
        owner.delete_bucket(Bucket=name)
    finally:
        admin("key", "delete", created["access_key"])


def test_a_prefix_condition_decides_what_another_key_may_list(s3, server, bucket, admin):
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"b")
    created = admin("key", "create", "boto3-policy-guest")
    guest = make_client(server[0], created["access_key"], created["secret_key"])
    try:
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(
            {"Effect": "Allow", "Principal": {"AWS": created["access_key"]}, "Action": "s3:ListBucket",
             "Resource": f"arn:aws:s3:::{bucket}", "Condition": {"StringEquals": {"s3:prefix": "public/"}}}))
        listed = guest.list_objects_v2(Bucket=bucket, Prefix="public/")
        assert [o["Key"] for o in listed["Contents"]] == ["public/a"]
        assert _code(guest.list_objects_v2, Bucket=bucket, Prefix="private/")[0] == "AccessDenied"
        assert _code(guest.list_objects_v2, Bucket=bucket)[0] == "AccessDenied"
    finally:
        s3.delete_bucket_policy(Bucket=bucket)
        admin("key", "delete", created["access_key"])


def _block(s3, bucket, acls=False, ignore=False, policy=False, restrict=False):
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": acls, "IgnorePublicAcls": ignore,
        "BlockPublicPolicy": policy, "RestrictPublicBuckets": restrict})


def test_public_access_block_round_trips_and_each_flag_applies(s3, server, bucket):
    code = "NoSuchPublicAccessBlockConfiguration"
    assert _code(s3.get_public_access_block, Bucket=bucket) == (code, 404)
    _block(s3, bucket, acls=True, policy=True)
    got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {"BlockPublicAcls": True, "IgnorePublicAcls": False,
                   "BlockPublicPolicy": True, "RestrictPublicBuckets": False}

    # BlockPublicAcls and BlockPublicPolicy.
    assert _code(s3.put_object, Bucket=bucket, Key="o", Body=b"x", ACL="public-read")[1] == 403
    assert _code(s3.put_bucket_acl, Bucket=bucket, ACL="public-read")[1] == 403
    assert _code(s3.put_bucket_policy, Bucket=bucket, Policy=_public_read(bucket))[1] == 403
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ACL="private")

    # IgnorePublicAcls.
    anon = _anonymous(server)
    _block(s3, bucket)
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="public-read")
    assert anon.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"
    _block(s3, bucket, ignore=True)
    assert _code(anon.get_object, Bucket=bucket, Key="o")[1] == 403

    # RestrictPublicBuckets.
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="private")
    _block(s3, bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=_public_read(bucket))
    assert anon.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"
    _block(s3, bucket, restrict=True)
    assert _code(anon.get_object, Bucket=bucket, Key="o")[1] == 403
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"

    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_public_access_block(Bucket=bucket)
    assert _code(s3.get_public_access_block, Bucket=bucket) == (code, 404)
