#!/usr/bin/env python3
"""The fault suite: what was acknowledged must read back, whatever happens.

Starts a local multi-process cluster with deploy/local-cluster.sh (5
`flexdrive storage` and 2 `flexdrive gateway` processes on loopback) and
runs these cases against it with boto3, each bounded in time:

  multipart-race      rounds of CompleteMultipartUpload, AbortMultipartUpload
                      and Complete again (an SDK retry) of one upload at the
                      same moment, every third round with a re-upload of
                      part 1 meanwhile: exactly one of Complete and Abort may
                      win, the loser answers NoSuchUpload, a completed object
                      reads back whole.
  delete-bucket-race  DeleteBucket racing PUTs into the bucket and an open
                      multipart upload: either the bucket is deleted and no
                      PUT was acknowledged, or it stays (BucketNotEmpty) and
                      every acknowledged PUT reads back.
  crashes             writers PUT objects through both gateways while storage
                      nodes are killed (kill -9, restarted), stopped
                      (SIGSTOP, SIGCONT after a few seconds), and chunk files
                      are corrupted or deleted on live nodes.
  restored-backup     a storage node is restarted from an older copy of its
                      data directory (a restored backup) after more objects
                      were written.
  gateway-crash       kill -9 of the gateway serving CompleteMultipartUpload,
                      at a random moment of it; the client retries Complete
                      through the other gateway (as an SDK would) and must get
                      the object, whole; a later Abort answers NoSuchUpload.
  durability          (after the others) the durability worker's count of
                      chunks below three copies comes back to 0, and every
                      chunk file a fault deleted is on three nodes again (or
                      was collected, had no record listed it).
  slow-upload         a PUT and an UploadPart whose first megabytes come at
                      once and the rest a byte at a time, for longer than the
                      garbage collector's grace period (lowered to 120 s for
                      the suite, sweeps every 2 s): the chunks they stored
                      first must survive the sweeps (write leases).

The storage nodes run with the garbage collector lowered for the whole suite
(FLEXDRIVE_GC_GRACE=120, FLEXDRIVE_GC_INTERVAL=2, FLEXDRIVE_GC_SETTLE=10),
so it sweeps during every case.

At the end of each case every acknowledged write is read back through both
gateways and compared (sha256). The report prints, per case, how often each
fault was injected, the writes acknowledged, and how many of them were lost
(missing or unreadable) or corrupt (different bytes): the goal is zero. Exits
1 if anything was lost or corrupt or a race had other than one winner.

Run (the binary must exist: `cargo build --release --bin flexdrive`, or set
FLEXDRIVE_BIN / --bin):

    conformance/faults.py
    conformance/faults.py --rounds 10 --crash-seconds 20 --keep

Every wait is bounded, every process started is stopped (also on failure or
Ctrl-C); the cluster dir is kept on failure or with --keep.
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from transitions import free_port_block

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_CLUSTER = os.path.join(REPO, "deploy", "local-cluster.sh")
REGION = "us-east-1"
STORAGE_NODES = 5
GATEWAYS = 2

START_TIMEOUT = 180  # one local-cluster.sh start
STOP_TIMEOUT = 60  # local-cluster.sh stop
READY_WAIT = 60  # until a bucket can be created
STOPPED_SECONDS = 4  # how long a SIGSTOPped node stays stopped
KILLED_SECONDS = 3  # how long a killed node stays down before its restart
MIB = 1024 * 1024
# The garbage collector as the suite runs it: a short grace, frequent sweeps.
GC_SETTINGS = {"FLEXDRIVE_GC_GRACE": "120", "FLEXDRIVE_GC_INTERVAL": "2", "FLEXDRIVE_GC_SETTLE": "10"}
GC_GRACE = int(GC_SETTINGS["FLEXDRIVE_GC_GRACE"])


def log(message):
    print(f"# [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def code_of(error):
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code", "?")
    return type(error).__name__


class Cluster:
    def __init__(self, binary, directory, base_port):
        self.binary = binary
        self.dir = directory
        self.base_port = base_port
        self.env = dict(os.environ, FLEXDRIVE_BIN=binary, **GC_SETTINGS)
        self.deleted_chunks = set()  # ids of chunk files a fault deleted
        self.last_fault_ms = 0

    def script(self, *args, timeout=START_TIMEOUT):
        command = [LOCAL_CLUSTER, *args, "--dir", self.dir, "--base-port", str(self.base_port)]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self):
        done = self.script("start", "--storage", str(STORAGE_NODES), "--gateways", str(GATEWAYS))
        if done.returncode != 0:
            raise RuntimeError(f"local-cluster.sh start failed: {done.stdout}{done.stderr}")
        self.settings = {}
        with open(os.path.join(self.dir, "cluster.env")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    name, value = line.strip().split("=", 1)
                    self.settings[name] = value

    def stop(self):
        try:
            self.script("stop", timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log("local-cluster.sh stop timed out")

    def client(self, gateway):
        port = self.base_port + gateway - 1
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=self.settings["FLEXDRIVE_ROOT_ACCESS_KEY"],
            aws_secret_access_key=self.settings["FLEXDRIVE_ROOT_SECRET_KEY"],
            region_name=REGION,
            config=Config(
                retries={"max_attempts": 1},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
                s3={"addressing_style": "path"},
            ),
        )

    def port(self, gateway):
        return self.base_port + gateway - 1

    def admin(self, path):
        """A JSON document of the admin API (gateway 1), or None."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.base_port + 80}{path}",
            headers={"Authorization": f"Bearer {self.settings['FLEXDRIVE_ADMIN_TOKEN']}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def slow_put(self, gateway, path, head, tail, seconds):
        """PUTs `head` at once, then `tail` a byte at a time spread over
        `seconds`, signed with an unsigned payload as SDKs stream; returns
        (status, body of the answer)."""
        url = f"http://127.0.0.1:{self.port(gateway)}{path}"
        request = AWSRequest(method="PUT", url=url, headers={"Content-Length": str(len(head) + len(tail))})
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        credentials = Credentials(self.settings["FLEXDRIVE_ROOT_ACCESS_KEY"], self.settings["FLEXDRIVE_ROOT_SECRET_KEY"])
        S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
        connection = http.client.HTTPConnection("127.0.0.1", self.port(gateway), timeout=60)
        try:
            connection.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", f"127.0.0.1:{self.port(gateway)}")
            for name, value in request.headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            connection.send(head)
            pause = seconds / max(1, len(tail))
            for byte in tail:
                time.sleep(pause)
                connection.send(bytes([byte]))
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def pid(self, name):
        try:
            with open(os.path.join(self.dir, "pids", f"{name}.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def storage_dir(self, index):
        return os.path.join(self.dir, f"storage-{index}")

    def chunk_files(self, index):
        root = os.path.join(self.storage_dir(index), "chunks")
        found = []
        if not os.path.isdir(root):
            return found
        for prefix in os.listdir(root):
            if len(prefix) != 2:
                continue
            sub = os.path.join(root, prefix)
            found.extend(os.path.join(sub, name) for name in os.listdir(sub))
        return found

    def wait_serving(self, client, bucket):
        """Until `client`'s gateway answers for `bucket` (bounded)."""
        deadline = time.time() + READY_WAIT
        while True:
            try:
                client.head_bucket(Bucket=bucket)
                return
            except (ClientError, BotoCoreError):
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

    def wait_writable(self, client, bucket):
        deadline = time.time() + READY_WAIT
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                return
            except (ClientError, BotoCoreError) as e:
                if code_of(e) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                if time.time() > deadline:
                    raise RuntimeError(f"cannot create bucket {bucket}: {e}")
                time.sleep(0.5)


class Case:
    def __init__(self, name):
        self.name = name
        self.faults = {}
        self.acknowledged = 0
        self.lost = []
        self.corrupt = []
        self.broken = []  # races with other than one winner
        self.notes = []

    def fault(self, kind):
        self.faults[kind] = self.faults.get(kind, 0) + 1

    @property
    def failed(self):
        return bool(self.lost or self.corrupt or self.broken)


def begin(cluster, name, bucket):
    """A case that writes into `bucket` (created first) through gateway 1."""
    s3 = cluster.client(1)
    cluster.wait_writable(s3, bucket)
    return Case(name), s3


def read_back(cluster, case, bucket, expected):
    """Reads every acknowledged object through both gateways."""
    clients = [cluster.client(g) for g in range(1, GATEWAYS + 1)]
    for key, digest in sorted(expected.items()):
        for gateway, client in enumerate(clients, 1):
            try:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except (ClientError, BotoCoreError) as e:
                case.lost.append(f"{bucket}/{key} via gateway {gateway}: {code_of(e)}")
                break
            if sha(body) != digest:
                case.corrupt.append(f"{bucket}/{key} via gateway {gateway}")
                break


def multipart_race(cluster, rounds):
    bucket = "faults-multipart"
    case, s3 = begin(cluster, "multipart-race", bucket)
    other = cluster.client(2)
    first, second, other_first = os.urandom(5 * MIB), os.urandom(1024), os.urandom(5 * MIB)
    expected = {}
    outcomes = {"completed": 0, "aborted": 0}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for round_number in range(rounds):
            key = f"race-{round_number}"
            upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            parts = []
            for number, body in ((1, first), (2, second)):
                etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})

            def attempt(call):
                try:
                    call()
                    return "ok"
                except (ClientError, BotoCoreError) as e:
                    return code_of(e)

            complete = lambda client: attempt(  # noqa: E731
                lambda: client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
                )
            )
            futures = [
                pool.submit(complete, s3),
                pool.submit(attempt, lambda: other.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)),
                pool.submit(complete, other),
            ]
            if round_number % 3 == 0:
                case.fault("part re-upload")
                futures.append(
                    pool.submit(
                        attempt,
                        lambda: s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=other_first),
                    )
                )
            answers = [f.result() for f in futures]
            case.fault("complete/abort/complete")
            completes = [a for a in (answers[0], answers[2]) if a == "ok"]
            aborted = answers[1] == "ok"
            summary = f"round {round_number}: complete {answers[0]}/{answers[2]}, abort {answers[1]}"
            if len(answers) > 3:
                summary += f", re-upload {answers[3]}"
            if completes and aborted:
                case.broken.append(f"{summary}: both won")
            elif not completes and not aborted:
                case.broken.append(f"{summary}: neither won")
            elif completes:
                outcomes["completed"] += 1
                case.acknowledged += 1
                expected[key] = sha(first + second)
                if answers[1] != "NoSuchUpload":
                    case.broken.append(f"{summary}: the losing abort did not answer NoSuchUpload")
            else:
                outcomes["aborted"] += 1
                for answer in (answers[0], answers[2]):
                    if answer not in ("NoSuchUpload", "InvalidPart"):
                        case.broken.append(f"{summary}: a losing complete answered {answer}")
    read_back(cluster, case, bucket, expected)
    case.notes.append(f"{outcomes['completed']} rounds completed, {outcomes['aborted']} aborted")
    return case


def delete_bucket_race(cluster, rounds):
    case = Case("delete-bucket-race")
    s3, other = cluster.client(1), cluster.client(2)
    kept_buckets = {}
    outcomes = {"deleted": 0, "kept": 0}
    with ThreadPoolExecutor(max_workers=6) as pool:
        for round_number in range(rounds):
            bucket = f"faults-delete-{round_number}"
            cluster.wait_writable(s3, bucket)
            upload = s3.create_multipart_upload(Bucket=bucket, Key="upload")["UploadId"]
            s3.upload_part(Bucket=bucket, Key="upload", UploadId=upload, PartNumber=1, Body=os.urandom(1000))
            bodies = {f"k{i}": os.urandom(random.randint(1, 64) * 1024) for i in range(4)}

            def put(client, key, delay):
                time.sleep(delay)
                try:
                    client.put_object(Bucket=bucket, Key=key, Body=bodies[key])
                    return key, "ok"
                except (ClientError, BotoCoreError) as e:
                    return key, code_of(e)

            def delete():
                try:
                    other.delete_bucket(Bucket=bucket)
                    return "ok"
                except (ClientError, BotoCoreError) as e:
                    return code_of(e)

            deleting = pool.submit(delete)
            puts = [
                pool.submit(put, s3 if i % 2 else other, key, (round_number % 6) * 0.006 + i * 0.002)
                for i, key in enumerate(bodies)
            ]
            case.fault("DeleteBucket vs 4 PUTs and an upload")
            verdict = deleting.result()
            answers = dict(f.result() for f in puts)
            acked = [k for k, a in answers.items() if a == "ok"]
            case.acknowledged += len(acked)
            summary = f"round {round_number}: delete {verdict}, puts {answers}"
            if verdict == "ok":
                outcomes["deleted"] += 1
                for key in acked:
                    case.lost.append(f"{bucket}/{key}: acknowledged into a bucket that was deleted ({summary})")
            else:
                outcomes["kept"] += 1
                kept_buckets[bucket] = {k: sha(bodies[k]) for k in acked}
    for bucket, expected in kept_buckets.items():
        read_back(cluster, case, bucket, expected)
    case.notes.append(f"{outcomes['deleted']} buckets deleted, {outcomes['kept']} kept")
    return case


def crashes(cluster, seconds, writers):
    case = Case("crashes")
    bucket = "faults-crashes"
    cluster.wait_writable(cluster.client(1), bucket)
    expected = {}
    lock = threading.Lock()
    stop = threading.Event()
    failures = {}

    def writer(number):
        client = cluster.client(1 + number % GATEWAYS)
        sequence = 0
        while not stop.is_set():
            key = f"w{number}-{sequence}"
            sequence += 1
            body = os.urandom(random.choice([1, 4, 64, 700, 1500]) * 1024)
            try:
                client.put_object(Bucket=bucket, Key=key, Body=body)
            except (ClientError, BotoCoreError) as e:
                with lock:
                    failures[code_of(e)] = failures.get(code_of(e), 0) + 1
                time.sleep(0.2)
                continue
            with lock:
                expected[key] = sha(body)

    def restart_missing():
        done = cluster.script("start", "--storage", str(STORAGE_NODES), "--gateways", str(GATEWAYS))
        if done.returncode != 0:
            log(f"restart failed: {done.stdout}{done.stderr}")

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(writers)]
    for t in threads:
        t.start()
    deadline = time.time() + seconds
    faults = ["kill -9", "SIGSTOP", "corrupt chunk file", "delete chunk file"]
    turn = 0
    try:
        while time.time() < deadline:
            time.sleep(2)
            kind = faults[turn % len(faults)]
            turn += 1
            node = random.randint(1, STORAGE_NODES)
            name = f"storage-{node}"
            if kind in ("kill -9", "SIGSTOP"):
                pid = cluster.pid(name)
                if pid is None:
                    continue
                if kind == "kill -9":
                    os.kill(pid, signal.SIGKILL)
                    case.fault(kind)
                    time.sleep(KILLED_SECONDS)
                    restart_missing()
                else:
                    os.kill(pid, signal.SIGSTOP)
                    case.fault(kind)
                    time.sleep(STOPPED_SECONDS)
                    os.kill(pid, signal.SIGCONT)
            else:
                files = cluster.chunk_files(node)
                if not files:
                    continue
                victim = random.choice(files)
                try:
                    if kind == "delete chunk file":
                        os.remove(victim)
                        cluster.deleted_chunks.add(os.path.basename(victim))
                    else:
                        with open(victim, "r+b") as f:
                            size = os.path.getsize(victim)
                            f.seek(max(0, size - 100))
                            f.write(os.urandom(50))
                    case.fault(kind)
                except OSError:
                    pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
        restart_missing()
        cluster.last_fault_ms = int(time.time() * 1000)
    case.acknowledged = len(expected)
    read_back(cluster, case, bucket, expected)
    if failures:
        case.notes.append("writes refused (not acknowledged): " + ", ".join(f"{k} {v}" for k, v in sorted(failures.items())))
    return case


def restored_backup(cluster, objects):
    bucket = "faults-backup"
    case, s3 = begin(cluster, "restored-backup", bucket)
    expected = {}

    def write(prefix, count):
        for n in range(count):
            body = os.urandom(random.choice([2, 64, 900]) * 1024)
            s3.put_object(Bucket=bucket, Key=f"{prefix}-{n}", Body=body)
            expected[f"{prefix}-{n}"] = sha(body)

    write("before", objects)
    node = STORAGE_NODES
    name = f"storage-{node}"
    backup = cluster.storage_dir(node) + ".backup"

    def stop_node():
        pid = cluster.pid(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 20
        while cluster.pid(name) is not None and time.time() < deadline:
            time.sleep(0.2)
        if cluster.pid(name) is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    def start_nodes():
        done = cluster.script("start", "--storage", str(STORAGE_NODES), "--gateways", str(GATEWAYS))
        if done.returncode != 0:
            raise RuntimeError(f"restart failed: {done.stdout}{done.stderr}")

    stop_node()
    shutil.copytree(cluster.storage_dir(node), backup)
    start_nodes()
    write("after", objects)
    stop_node()
    shutil.rmtree(cluster.storage_dir(node))
    shutil.move(backup, cluster.storage_dir(node))
    case.fault("node restarted from an older data directory")
    start_nodes()
    cluster.last_fault_ms = int(time.time() * 1000)
    write("restored", objects // 2)
    case.acknowledged = len(expected)
    read_back(cluster, case, bucket, expected)
    return case


def slow_upload(cluster, seconds):
    bucket = "faults-slow"
    case, s3 = begin(cluster, "slow-upload", bucket)
    # Three chunks stored at once, then a trickle that outlasts the grace.
    head, tail = os.urandom(3 * MIB), os.urandom(100)
    expected = {}
    upload = s3.create_multipart_upload(Bucket=bucket, Key="slow-part")["UploadId"]
    sweeps = set()
    done = threading.Event()

    def watch_gc():
        while not done.is_set():
            report = cluster.admin("/v1/gc")
            if report and report.get("last_complete_ms"):
                sweeps.add(report["last_complete_ms"])
            done.wait(3)

    watcher = threading.Thread(target=watch_gc, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(max_workers=2) as pool:
        put = pool.submit(cluster.slow_put, 1, f"/{bucket}/slow-put", head, tail, seconds)
        part = pool.submit(
            cluster.slow_put, 2, f"/{bucket}/slow-part?partNumber=1&uploadId={upload}", head, tail, seconds
        )
        put_answer, part_answer = put.result(), part.result()
    done.set()
    watcher.join(timeout=15)
    case.fault(f"PUT and UploadPart over {seconds} s (grace {GC_GRACE} s)")
    case.notes.append(f"garbage-collection sweeps completed while they streamed: {len(sweeps)}")
    if len(sweeps) < 3:
        case.broken.append(f"the garbage collector swept {len(sweeps)} times during the uploads; the case proves nothing")
    if put_answer[0] == 200:
        case.acknowledged += 1
        expected["slow-put"] = sha(head + tail)
    else:
        case.notes.append(f"slow PUT refused: {put_answer}")
    if part_answer[0] == 200:
        etag = s3.list_parts(Bucket=bucket, Key="slow-part", UploadId=upload)["Parts"][0]["ETag"]
        s3.complete_multipart_upload(
            Bucket=bucket, Key="slow-part", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        case.acknowledged += 1
        expected["slow-part"] = sha(head + tail)
    else:
        case.notes.append(f"slow UploadPart refused: {part_answer}")
    if not expected:
        case.broken.append("neither slow upload was acknowledged")
    read_back(cluster, case, bucket, expected)
    return case


def gateway_crash(cluster, rounds):
    bucket = "faults-gateway-crash"
    case, s3 = begin(cluster, "gateway-crash", bucket)
    first, second = os.urandom(5 * MIB), os.urandom(1024)
    expected = {}
    answers = {}
    # How long a Complete takes through gateway 2, as this client sees it:
    # the kills are spread over that time.
    key = "calibration"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=second)["ETag"]
    calibrating = cluster.client(2)
    calibrating.head_bucket(Bucket=bucket)
    began = time.time()
    calibrating.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    complete_takes = time.time() - began
    expected[key] = sha(second)
    case.acknowledged += 1
    case.notes.append(f"a Complete takes {complete_takes * 1000:.0f} ms (a connected client)")
    for round_number in range(rounds):
        key = f"crash-{round_number}"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, body in ((1, first), (2, second)):
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        document = {"Parts": parts}
        doomed = cluster.client(2)
        cluster.wait_serving(doomed, bucket)  # connected before the race
        pid = cluster.pid("gateway-2")
        if pid is None:
            raise RuntimeError("gateway-2 is not running")

        def complete_doomed():
            try:
                doomed.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload=document)
                return "ok"
            except (ClientError, BotoCoreError) as e:
                return code_of(e)

        with ThreadPoolExecutor(max_workers=1) as pool:
            first_try = pool.submit(complete_doomed)
            # Spread over the time a Complete takes, from before it starts
            # to after it answered.
            time.sleep(random.uniform(0, complete_takes))
            os.kill(pid, signal.SIGKILL)
            case.fault("kill -9 of the gateway during Complete")
            first_answer = first_try.result()
        started = cluster.script("start", "--storage", str(STORAGE_NODES), "--gateways", str(GATEWAYS))
        if started.returncode != 0:
            raise RuntimeError(f"restart failed: {started.stdout}{started.stderr}")
        # A gateway answers 503 until it knows the layout; reads come later.
        cluster.wait_serving(cluster.client(2), bucket)
        # The SDK's retry, through the other gateway; 503s (a Complete the
        # dead gateway left half-way waits out its lease) are retried too.
        retry = "not tried"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload=document)
                retry = "ok"
                break
            except (ClientError, BotoCoreError) as e:
                retry = code_of(e)
                if retry not in ("ServiceUnavailable", "SlowDown", "InternalError", "ReadTimeoutError"):
                    break
                time.sleep(1)
        answers[f"{first_answer} then {retry}"] = answers.get(f"{first_answer} then {retry}", 0) + 1
        if first_answer == "ok" or retry == "ok":
            case.acknowledged += 1
            expected[key] = sha(first + second)
        if retry != "ok":
            case.broken.append(f"round {round_number}: the retried Complete answered {retry} (first: {first_answer})")
            continue
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            case.broken.append(f"round {round_number}: Abort after a completed upload succeeded")
        except ClientError as e:
            if code_of(e) != "NoSuchUpload":
                case.broken.append(f"round {round_number}: Abort after Complete answered {code_of(e)}")
    read_back(cluster, case, bucket, expected)
    case.notes.append("first Complete then retried Complete: " + ", ".join(f"{k} ×{v}" for k, v in sorted(answers.items())))
    return case


def durability(cluster, wait):
    case = Case("durability")
    started = time.time()
    figures = []
    report = None
    while time.time() - started < wait:
        report = cluster.admin("/v1/repair")
        if report is not None:
            below = report.get("chunks_below_three_copies")
            if not figures or figures[-1] != below:
                figures.append(below)
            if (report.get("complete") and (report.get("last_complete_ms") or 0) > cluster.last_fault_ms
                    and below == 0):
                break
        time.sleep(3)
    else:
        case.broken.append(f"chunks below three copies did not come back to 0 within {wait} s: {report}")
    case.notes.append(f"chunks below three copies, as reported after the faults: {figures} "
                      f"(waited {time.time() - started:.0f} s)")
    copies = {}
    for node in range(1, STORAGE_NODES + 1):
        for path in cluster.chunk_files(node):
            name = os.path.basename(path)
            copies[name] = copies.get(name, 0) + 1
    for chunk in sorted(cluster.deleted_chunks):
        found = copies.get(chunk, 0)
        if 0 < found < 3:
            case.broken.append(f"chunk {chunk} (a file a fault deleted) has {found} copies while 0 are reported below three")
    back = sum(1 for c in cluster.deleted_chunks if copies.get(c, 0) >= 3)
    case.notes.append(f"deleted chunk files: {len(cluster.deleted_chunks)}, on three nodes again: {back}, "
                      f"collected as orphans: {len(cluster.deleted_chunks) - back}")
    return case


def report(cases):
    print()
    print("| case | faults injected | acknowledged writes | lost | corrupt | races with other than one winner |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        faults = ", ".join(f"{kind} ×{count}" for kind, count in case.faults.items()) or "-"
        print(f"| {case.name} | {faults} | {case.acknowledged} | {len(case.lost)} | {len(case.corrupt)} | {len(case.broken)} |")
    print()
    for case in cases:
        for note in case.notes:
            print(f"# {case.name}: {note}")
        for kind, items in (("lost", case.lost), ("corrupt", case.corrupt), ("broken", case.broken)):
            for item in items[:10]:
                print(f"FAIL - {case.name}: {kind}: {item}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("FLEXDRIVE_BIN", os.path.join(REPO, "target", "release", "flexdrive")))
    parser.add_argument("--rounds", type=int, default=30, help="rounds of each race")
    parser.add_argument("--crash-seconds", type=int, default=60)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--backup-objects", type=int, default=60)
    parser.add_argument("--base-port", type=int, help="first port of the cluster's block [a free one]")
    parser.add_argument("--keep", action="store_true", help="keep the cluster dir")
    parser.add_argument("--slow-seconds", type=int, default=GC_GRACE + 30,
                        help="how long the slow uploads stream (longer than the suite's GC grace)")
    parser.add_argument("--crash-rounds", type=int, default=8, help="gateway kills during Complete")
    parser.add_argument("--durability-wait", type=int, default=240,
                        help="how long the durability case waits for chunks below three copies to come back to 0")
    parser.add_argument("--cases", default="multipart-race,delete-bucket-race,crashes,restored-backup,gateway-crash,slow-upload,durability",
                        help="comma-separated cases to run [all]")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"faults.py: no binary at {args.bin} (cargo build --release --bin flexdrive)", file=sys.stderr)
        return 2
    base_port = args.base_port or free_port_block()
    if base_port is None:
        print("faults.py: no free block of 81 ports", file=sys.stderr)
        return 2
    directory = tempfile.mkdtemp(prefix="flexdrive-faults.")
    cluster = Cluster(os.path.abspath(args.bin), directory, base_port)
    cases = []
    failed = True
    try:
        log(f"starting {STORAGE_NODES} storage nodes and {GATEWAYS} gateways in {directory}")
        cluster.start()
        for name, run in (
            ("multipart-race", lambda: multipart_race(cluster, args.rounds)),
            ("delete-bucket-race", lambda: delete_bucket_race(cluster, args.rounds)),
            ("crashes", lambda: crashes(cluster, args.crash_seconds, args.writers)),
            ("restored-backup", lambda: restored_backup(cluster, args.backup_objects)),
            ("gateway-crash", lambda: gateway_crash(cluster, args.crash_rounds)),
            ("slow-upload", lambda: slow_upload(cluster, args.slow_seconds)),
            ("durability", lambda: durability(cluster, args.durability_wait)),
        ):
            if name not in args.cases.split(","):
                continue
            log(f"case {name}")
            started = time.time()
            case = run()
            case.notes.append(f"took {time.time() - started:.0f} s")
            cases.append(case)
        failed = any(case.failed for case in cases)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        cluster.stop()
        report(cases)
        if failed or args.keep:
            log(f"cluster dir kept: {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"{'FAILED' if failed else 'ok'}: {len(cases)} cases")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
