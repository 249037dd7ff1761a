#!/usr/bin/env python3
"""Makes an upgrade fixture: a `flexdrive server` data directory written by
one release, and a manifest of what it holds, for `upgrade_test.py` (and the
Rust test `upgrade`) to check under a later release.

    conformance/upgrade/make_fixture.py BINARY OUT.tar.gz

BINARY is the flexdrive binary of the release the fixture stands for (build
it from that release's commit). Object bodies are small and chunks are cut at
16 KiB, so the archive stays small enough to commit. Run it again, with the
old binary, whenever the on-disk or wire format changes: each fixture stays,
and every later release must read all of them.
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
import urllib.request
from botocore.config import Config

ROOT_ACCESS = "FDFIXTUREROOT0000001"
ROOT_SECRET = "fixture-root-secret-0123456789abcdef0123"
ADMIN_TOKEN = "fixture-admin-token-0123456789abcdef"
CHUNK_SIZE = 16 * 1024
START_TIMEOUT = 60


def body(name: str, size: int) -> bytes:
    """Deterministic bytes: a SHA-256 chain seeded with the name."""
    out = bytearray()
    block = name.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin(port: int, method: str, path: str, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="fd-fixture-")
    data = os.path.join(work, "data")
    s3_port, admin_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        FLEXDRIVE_ROOT_ACCESS_KEY=ROOT_ACCESS,
        FLEXDRIVE_ROOT_SECRET_KEY=ROOT_SECRET,
        FLEXDRIVE_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    server = subprocess.Popen(
        [binary, "server", "--data-dir", data, "--s3-addr", f"127.0.0.1:{s3_port}",
         "--admin-addr", f"127.0.0.1:{admin_port}", "--chunk-size", str(CHUNK_SIZE)],
        env=env, stdout=open(os.path.join(work, "server.log"), "w"), stderr=subprocess.STDOUT,
    )
    try:
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
            aws_access_key_id=ROOT_ACCESS, aws_secret_access_key=ROOT_SECRET,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        deadline = time.time() + START_TIMEOUT
        while True:
            try:
                s3.list_buckets()
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start; see " + work)
                time.sleep(0.5)

        objects = []  # what must read back, current versions
        versions = []  # (bucket, key, version id, sha256) readable by version id
        gone = []  # (bucket, key) that must answer 404

        def put(bucket, key, data, **extra):
            answer = s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            return answer.get("VersionId")

        def record(bucket, key, data, **meta):
            objects.append(dict(bucket=bucket, key=key, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), **meta))

        s3.create_bucket(Bucket="plain")
        small = b"hello flexdrive\n"
        put("plain", "small.txt", small, ContentType="text/plain", Metadata={"origin": "fixture"})
        record("plain", "small.txt", small, content_type="text/plain", metadata={"origin": "fixture"})
        chunked = body("chunked", 50_000)
        put("plain", "multi/chunked.bin", chunked)
        record("plain", "multi/chunked.bin", chunked)
        put("plain", "empty", b"")
        record("plain", "empty", b"")
        put("plain", "deleted.txt", b"soon gone")
        s3.delete_object(Bucket="plain", Key="deleted.txt")
        gone.append(("plain", "deleted.txt"))
        tagged = b"tagged object"
        put("plain", "tagged.txt", tagged, Tagging="team=storage&tier=gold")
        record("plain", "tagged.txt", tagged, tags={"team": "storage", "tier": "gold"})
        put("plain", "overwritten.txt", b"first body")
        second = body("overwritten", 20_000)
        put("plain", "overwritten.txt", second)
        record("plain", "overwritten.txt", second)

        mpu_body = body("multipart", 40_000)
        upload = s3.create_multipart_upload(Bucket="plain", Key="mpu.bin", ContentType="application/x-test")
        part = s3.upload_part(Bucket="plain", Key="mpu.bin", UploadId=upload["UploadId"], PartNumber=1, Body=mpu_body)
        s3.complete_multipart_upload(
            Bucket="plain", Key="mpu.bin", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        record("plain", "mpu.bin", mpu_body, content_type="application/x-test", parts=1)

        # An upload left open: the new release must list and complete it.
        open_body = body("open-upload", 20_000)
        pending = s3.create_multipart_upload(Bucket="plain", Key="pending.bin")
        pending_part = s3.upload_part(Bucket="plain", Key="pending.bin", UploadId=pending["UploadId"],
                                      PartNumber=1, Body=open_body)

        s3.put_bucket_tagging(Bucket="plain", Tagging={"TagSet": [{"Key": "env", "Value": "fixture"}]})
        s3.put_bucket_cors(Bucket="plain", CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["https://example.com"], "AllowedMethods": ["GET"]}]})

        s3.create_bucket(Bucket="versioned")
        s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        doc1, doc2 = b"doc version one", body("doc-two", 30_000)
        v1 = put("versioned", "doc.txt", doc1)
        v2 = put("versioned", "doc.txt", doc2)
        s3.delete_object(Bucket="versioned", Key="doc.txt")
        gone.append(("versioned", "doc.txt"))
        versions += [dict(bucket="versioned", key="doc.txt", version_id=v1, sha256=hashlib.sha256(doc1).hexdigest()),
                     dict(bucket="versioned", key="doc.txt", version_id=v2, sha256=hashlib.sha256(doc2).hexdigest())]
        k1, k2 = b"kept one", b"kept two"
        kv1 = put("versioned", "kept.txt", k1)
        kv2 = put("versioned", "kept.txt", k2)
        record("versioned", "kept.txt", k2, version_id=kv2)
        versions.append(dict(bucket="versioned", key="kept.txt", version_id=kv1, sha256=hashlib.sha256(k1).hexdigest()))

        key = admin(admin_port, "POST", "/v1/keys", {"name": "fixture-app"})
        admin(admin_port, "POST", f"/v1/keys/{key['access_key']}/allow",
              {"bucket": "plain", "read": True, "write": False, "owner": False})

        manifest = dict(
            made_by=version,
            root_access_key=ROOT_ACCESS,
            root_secret_key=ROOT_SECRET,
            admin_token=ADMIN_TOKEN,
            chunk_size=CHUNK_SIZE,
            buckets=["plain", "versioned"],
            objects=objects,
            versions=versions,
            gone=[dict(bucket=b, key=k) for b, k in gone],
            open_upload=dict(bucket="plain", key="pending.bin", upload_id=pending["UploadId"],
                             etag=pending_part["ETag"], sha256=hashlib.sha256(open_body).hexdigest(),
                             size=len(open_body)),
            bucket_tags={"plain": {"env": "fixture"}},
            key=dict(access_key=key["access_key"], secret_key=key["secret_key"], may_read="plain"),
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with open(os.path.join(data, "fixture.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    with tarfile.open(out, "w:gz") as tar:
        tar.add(data, arcname="data")
    shutil.rmtree(work)
    print(f"wrote {out} ({os.path.getsize(out)} bytes), made by {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
