#!/usr/bin/env python3
"""Checks that a release reads what an earlier one wrote: extracts an
upgrade fixture (made by make_fixture.py with the earlier binary), starts
`flexdrive server` of this release on it, and reads everything back.

    conformance/upgrade/check_fixture.py BINARY FIXTURE.tar.gz [...]

One line per check, `ok - ...` or `FAIL - ...`, then `N passed, M failed`;
exits 1 on any failure.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

START_TIMEOUT = 90

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}: {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def client(port, access, secret):
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def status(call):
    try:
        call()
        return 200
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])


def check_fixture(binary, fixture):
    work = tempfile.mkdtemp(prefix="fd-upgrade-")
    with tarfile.open(fixture) as tar:
        tar.extractall(work, filter="data")
    data = os.path.join(work, "data")
    with open(os.path.join(data, "fixture.json")) as f:
        m = json.load(f)
    tag = os.path.basename(fixture)
    s3_port, admin_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        FLEXDRIVE_ROOT_ACCESS_KEY=m["root_access_key"],
        FLEXDRIVE_ROOT_SECRET_KEY=m["root_secret_key"],
        FLEXDRIVE_ADMIN_TOKEN=m["admin_token"],
    )
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [binary, "server", "--data-dir", data, "--s3-addr", f"127.0.0.1:{s3_port}",
         "--admin-addr", f"127.0.0.1:{admin_port}", "--chunk-size", str(m["chunk_size"])],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        s3 = client(s3_port, m["root_access_key"], m["root_secret_key"])
        deadline = time.time() + START_TIMEOUT
        started = False
        while time.time() < deadline and server.poll() is None:
            try:
                s3.list_buckets()
                started = True
                break
            except Exception:
                time.sleep(0.5)
        check(f"{tag}: flexdrive server starts on the data written by {m['made_by']}", started,
              "no answer; server log: " + open(os.path.join(work, "server.log")).read()[-2000:])
        if not started:
            return
        names = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
        check(f"{tag}: buckets listed", names == sorted(m["buckets"]), str(names))
        for o in m["objects"]:
            what = f"{tag}: {o['bucket']}/{o['key']}"
            try:
                got = s3.get_object(Bucket=o["bucket"], Key=o["key"])
                data_back = got["Body"].read()
                ok = sha256(data_back) == o["sha256"] and len(data_back) == o["size"]
                if "content_type" in o:
                    ok = ok and got["ContentType"] == o["content_type"]
                if "metadata" in o:
                    ok = ok and got["Metadata"] == o["metadata"]
                if "version_id" in o:
                    ok = ok and got.get("VersionId") == o["version_id"]
                check(f"{what} reads back identical", ok,
                      f"{len(data_back)} bytes, {got.get('ContentType')}, {got.get('Metadata')}")
            except ClientError as e:
                check(f"{what} reads back identical", False, str(e))
            if "tags" in o:
                tags = s3.get_object_tagging(Bucket=o["bucket"], Key=o["key"])["TagSet"]
                check(f"{what} keeps its tags", {t["Key"]: t["Value"] for t in tags} == o["tags"], str(tags))
            if "parts" in o:
                head = s3.head_object(Bucket=o["bucket"], Key=o["key"], PartNumber=1)
                check(f"{what} keeps its parts", head.get("PartsCount") == o["parts"], str(head.get("PartsCount")))
        for v in m["versions"]:
            what = f"{tag}: {v['bucket']}/{v['key']} version {v['version_id'][-8:]}"
            try:
                got = s3.get_object(Bucket=v["bucket"], Key=v["key"], VersionId=v["version_id"])
                check(f"{what} reads back identical", sha256(got["Body"].read()) == v["sha256"])
            except ClientError as e:
                check(f"{what} reads back identical", False, str(e))
        for g in m["gone"]:
            code = status(lambda: s3.get_object(Bucket=g["bucket"], Key=g["key"]))
            check(f"{tag}: deleted {g['bucket']}/{g['key']} stays deleted", code == 404, f"HTTP {code}")
        for bucket, tags in m["bucket_tags"].items():
            got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
            check(f"{tag}: bucket {bucket} keeps its tags", {t["Key"]: t["Value"] for t in got} == tags, str(got))
        up = m["open_upload"]
        uploads = s3.list_multipart_uploads(Bucket=up["bucket"]).get("Uploads", [])
        check(f"{tag}: the open upload is listed", [u["UploadId"] for u in uploads] == [up["upload_id"]], str(uploads))
        s3.complete_multipart_upload(
            Bucket=up["bucket"], Key=up["key"], UploadId=up["upload_id"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": up["etag"]}]},
        )
        back = s3.get_object(Bucket=up["bucket"], Key=up["key"])["Body"].read()
        check(f"{tag}: the open upload completes under this release", sha256(back) == up["sha256"])
        k = m["key"]
        app = client(s3_port, k["access_key"], k["secret_key"])
        first = m["objects"][0]
        code = status(lambda: app.get_object(Bucket=first["bucket"], Key=first["key"]))
        check(f"{tag}: the application key still reads {k['may_read']}", code == 200, f"HTTP {code}")
        code = status(lambda: app.put_object(Bucket=first["bucket"], Key="not-allowed", Body=b"x"))
        check(f"{tag}: the application key still may not write", code == 403, f"HTTP {code}")
        s3.put_object(Bucket="plain", Key="written-after-upgrade", Body=b"new")
        back = s3.get_object(Bucket="plain", Key="written-after-upgrade")["Body"].read()
        check(f"{tag}: new writes work after the upgrade", back == b"new")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# kept {work} for a look (server.log inside)")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    for fixture in sys.argv[2:]:
        check_fixture(binary, fixture)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
