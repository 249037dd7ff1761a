"""S3 ACLs through boto3: canned ACLs, grant headers, ACL documents, and
what their grants allow to other keys and to anonymous requests."""

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import make_client

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture
def other(server, admin):
    """A second key with no permission on the test's bucket, and its id."""
    created = admin("key", "create", "boto3-acl-other")
    client = make_client(server[0], created["access_key"], created["secret_key"])
    owner = client.list_buckets()["Owner"]
    yield client, owner["ID"], owner["DisplayName"]
    admin("key", "delete", created["access_key"])


def grants(acl):
    """`PERMISSION grantee` strings, grantee by ID or group URI."""
    return [f'{g["Permission"]} {g["Grantee"].get("ID") or g["Grantee"].get("URI")}'
            for g in acl["Grants"]]


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_canned_acls_give_documented_grants_and_access(s3, server, bucket, other):
    client, _, _ = other
    root_id = s3.list_buckets()["Owner"]["ID"]
    url = f"{server[0]}/{bucket}"
    s3.put_bucket_acl(Bucket=bucket, ACL="authenticated-read")
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == [
        f"READ {AUTHENTICATED_USERS}", f"FULL_CONTROL {root_id}"]
    assert requests.get(url, timeout=10).status_code == 403
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0

    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == [
        f"READ {ALL_USERS}", f"WRITE {ALL_USERS}", f"FULL_CONTROL {root_id}"]
    assert requests.put(f"{url}/anonymous", data=b"a", timeout=10).status_code == 200
    # The bucket's grants list and write; the object written privately stays unread.
    assert requests.get(url, timeout=10).status_code == 200
    s3.put_object(Bucket=bucket, Key="private", Body=b"p")
    assert requests.get(f"{url}/private", timeout=10).status_code == 403

    s3.put_object(Bucket=bucket, Key="public", Body=b"p", ACL="public-read")
    assert requests.get(f"{url}/public", timeout=10).status_code == 200
    # AllUsers includes signed requests of any key.
    assert client.get_object(Bucket=bucket, Key="public")["Body"].read() == b"p"
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=bucket, Key="private")
    assert code(e) == "AccessDenied"


def test_grant_headers_and_acl_documents_name_keys_by_canonical_id(s3, bucket, other):
    client, other_id, other_name = other
    root = s3.list_buckets()["Owner"]
    s3.put_object(Bucket=bucket, Key="doc", Body=b"doc", GrantRead=f'id="{other_id}"')
    acl = s3.get_object_acl(Bucket=bucket, Key="doc")
    assert grants(acl) == [f"READ {other_id}"]
    assert acl["Grants"][0]["Grantee"]["DisplayName"] == other_name
    assert client.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"doc"

    s3.put_object_acl(Bucket=bucket, Key="doc", AccessControlPolicy={
        "Owner": {"ID": root["ID"]},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": root["ID"]}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": other_id}, "Permission": "READ_ACP"},
        ],
    })
    acl = client.get_object_acl(Bucket=bucket, Key="doc")
    assert acl["Owner"] == {"ID": root["ID"], "DisplayName": root["DisplayName"]}
    assert grants(acl) == [f"READ_ACP {other_id}", f"FULL_CONTROL {root['ID']}"]
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=bucket, Key="doc")
    assert code(e) == "AccessDenied"


def test_bad_acls_are_refused(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", GrantRead='id="4e4f53554348"')
    assert code(e) == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read",
                      GrantRead=f'uri="{ALL_USERS}"')
    assert code(e) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, GrantRead='emailAddress="a@example.com"')
    assert code(e) == "UnresolvableGrantByEmailAddress"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
            "Owner": {"ID": "4e4f53554348"},
            "Grants": [],
        })
    assert code(e) == "AccessDenied"
