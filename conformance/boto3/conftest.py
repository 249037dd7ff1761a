"""Starts a real `flexdrive server` (release binary) once per test session
on a free loopback port, and gives each test a boto3 client and a fresh
bucket. Set FLEXDRIVE_ENDPOINT (+ AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)
to run against a server that is already up instead (with
FLEXDRIVE_ADMIN_ENDPOINT and FLEXDRIVE_ADMIN_TOKEN for the admin tests)."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
BINARY = Path(os.environ.get("FLEXDRIVE_BIN", REPO / "target/release/flexdrive"))
# The admin API of the server under test: endpoint and token, once known.
_ADMIN = {}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(endpoint, proc, log):
    """Until the server says it is running: it listens a moment earlier, and
    answers 503 until its gateway knows the cluster's layout."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"flexdrive server exited:\n{Path(log).read_text()[-2000:]}")
        if "Flexdrive is running" in Path(log).read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"flexdrive server was not running within {START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def server():
    endpoint = os.environ.get("FLEXDRIVE_ENDPOINT")
    if endpoint:
        yield endpoint, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        return
    binary = BINARY
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: cargo build --release --bin flexdrive")
    work = tempfile.mkdtemp(prefix="flexdrive-boto3-")
    access, secret = "boto3" + secrets.token_hex(6), secrets.token_hex(20)
    endpoint = f"http://127.0.0.1:{_free_port()}"
    log = os.path.join(work, "server.log")
    # The admin API on a port and with a token the tests know.
    admin_addr, admin_token = f"127.0.0.1:{_free_port()}", secrets.token_hex(20)
    _ADMIN.update(endpoint=f"http://{admin_addr}", token=admin_token)
    env = dict(os.environ, FLEXDRIVE_ROOT_ACCESS_KEY=access, FLEXDRIVE_ROOT_SECRET_KEY=secret,
               FLEXDRIVE_ADMIN_TOKEN=admin_token)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "server", "--data-dir", os.path.join(work, "data"),
             "--s3-addr", endpoint.removeprefix("http://"),
             # A free port: the default 9001 may be taken by another server.
             "--admin-addr", admin_addr],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    try:
        _wait_until_up(endpoint, proc, log)
        yield endpoint, access, secret
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def admin(server):
    """`flexdrive admin --json ...` against the server under test: runs the
    CLI with the given arguments and returns its parsed JSON answer."""
    endpoint = _ADMIN.get("endpoint", os.environ.get("FLEXDRIVE_ADMIN_ENDPOINT"))
    token = _ADMIN.get("token", os.environ.get("FLEXDRIVE_ADMIN_TOKEN"))
    if not endpoint or not token or not BINARY.exists():
        pytest.skip("no admin API known: set FLEXDRIVE_ADMIN_ENDPOINT and FLEXDRIVE_ADMIN_TOKEN")

    def run(*args):
        out = subprocess.run(
            [str(BINARY), "admin", "--admin-endpoint", endpoint, "--json", *args],
            env=dict(os.environ, FLEXDRIVE_ADMIN_TOKEN=token),
            capture_output=True, text=True, timeout=60, check=True,
        )
        return json.loads(out.stdout) if out.stdout.strip() else None

    return run


def make_client(endpoint, access, secret, **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            connect_timeout=5,
            read_timeout=60,
            **config,
        ),
    )


@pytest.fixture(scope="session")
def s3(server):
    return make_client(*server)


@pytest.fixture
def bucket(s3):
    name = "t-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    yield name
    # Best-effort cleanup, bounded: a failing test may leave objects behind.
    try:
        for _ in range(20):
            listed = s3.list_object_versions(Bucket=name) if _supports_versions(s3, name) else None
            objs = s3.list_objects_v2(Bucket=name).get("Contents", [])
            keys = [{"Key": o["Key"]} for o in objs]
            if listed:
                keys += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                         for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]
            if not keys:
                break
            s3.delete_objects(Bucket=name, Delete={"Objects": keys[:1000], "Quiet": True})
        for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        s3.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's own result
        pass


def _supports_versions(s3, name):
    try:
        return s3.get_bucket_versioning(Bucket=name).get("Status") is not None
    except Exception:  # noqa: BLE001 - older servers
        return False
