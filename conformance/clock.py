#!/usr/bin/env python3
"""A process whose clock is 10 minutes ahead must not move the cluster's
timestamps, nor make its writes win over later ones.

    conformance/clock.py [--bin target/release/flexdrive]

Starts three storage nodes and three gateways as separate processes on
loopback. One storage node and one gateway run under libfaketime with their
clocks 10 minutes ahead (`faketime`, Debian package faketime), one more
gateway with its clock 4 minutes behind (within the 15 minutes a signed
request may be off, from the node ahead as well). The skewed storage node is given
the smallest node id, so it leads the layout and stamps the registry with
its clock. Then, through the real S3 API:

- the cluster forms (a layout epoch is decided) and serves;
- objects written through the correct gateway carry the correct time, and
  an overwrite is what a read returns (not shadowed by anything stamped
  ahead);
- writes through the gateway ahead fail with an error that names the clock
  (it refuses them itself, knowing the nodes' clocks from their answers;
  storage nodes refuse records stamped far ahead of theirs too), and no
  replica keeps any part of them, while reads through it work;
- a write through the gateway behind wins over an earlier one through the
  correct gateway (it stamps by the storage nodes' time, not its own);
- the correct gateway did not follow the skewed timestamps it read (the
  registry entries the skewed leader wrote): it counted them in
  flexdrive_hlc_future_timestamps_total.

One line per check (`ok - ` / `FAIL - `), then `N passed, M failed`; exit 1
on any failure. Every process it starts is stopped.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

AHEAD = "+10m"
BEHIND = "-4m"
START_TIMEOUT = 60
CMD_TIMEOUT = 30

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL - {name}: {detail}", flush=True)
    return ok


def free_ports(n):
    """`n` free TCP+UDP ports below the ephemeral range."""
    import random

    ports = []
    while len(ports) < n:
        p = random.randrange(20000, 32000)
        if p in ports:
            continue
        try:
            with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", p))
                u.bind(("127.0.0.1", p))
            ports.append(p)
        except OSError:
            pass
    return ports


class Cluster:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.procs = {}
        self.env = dict(os.environ)
        self.env.update(
            FLEXDRIVE_CLUSTER_SECRET="clock-test-cluster-secret-0123456789",
            FLEXDRIVE_ROOT_ACCESS_KEY="CLOCKTESTROOT",
            FLEXDRIVE_ROOT_SECRET_KEY="clock-test-root-secret",
            FLEXDRIVE_ADMIN_TOKEN="clock-test-admin-token",
        )
        self.env.pop("FLEXDRIVE_LEGACY_PEERS", None)

    def start(self, name, args, skew=None):
        cmd = [self.binary] + args
        env = dict(self.env)
        if skew:
            cmd = ["faketime", "-f", skew] + cmd
            # Timers and timeouts run on the monotonic clock: keep it real.
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        # A process group each: faketime runs the server as its child, and
        # a signal to the group reaches both.
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def signal_all(self, sig):
        for p in self.procs.values():
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        self.signal_all(signal.SIGTERM)
        deadline = time.time() + 15
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        while time.time() < deadline and self.alive():
            time.sleep(0.1)
        if self.alive():
            self.signal_all(signal.SIGKILL)
            for p in self.procs.values():
                p.wait()

    def alive(self):
        """Names of the started processes whose group still has a process."""
        names = []
        for name, p in self.procs.items():
            try:
                os.killpg(p.pid, 0)
                names.append(name)
            except ProcessLookupError:
                pass
            except PermissionError:
                names.append(name)
        return names


def s3(port):
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="CLOCKTESTROOT", aws_secret_access_key="clock-test-root-secret",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=CMD_TIMEOUT),
    )


def http_get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=CMD_TIMEOUT) as resp:
        return resp.read().decode()


def metric(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("FLEXDRIVE_BIN", "target/release/flexdrive"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if shutil.which("faketime") is None:
        print("clock.py: faketime is not installed (apt-get install faketime)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    work = tempfile.mkdtemp(prefix="flexdrive-clock.")
    c = Cluster(binary, work)
    (h1, h2, h3, g1, g2, g3, gw1, gw2, gw3, gg1, gg2, gg3, admin) = free_ports(13)
    seed = f"127.0.0.1:{g1}"
    try:
        # The skewed node leads: the smallest id.
        ids = {"storage-1": "f000000000000001", "storage-2": "f000000000000002", "storage-3": "0000000000000001"}
        for i, (name, http, gossip) in enumerate(
            [("storage-1", h1, g1), ("storage-2", h2, g2), ("storage-3", h3, g3)], start=1
        ):
            data = os.path.join(work, name)
            os.makedirs(data)
            with open(os.path.join(data, "node_id"), "w") as f:
                f.write(ids[name])
            c.start(name, ["storage", "--data-dir", data, "--http-addr", f"127.0.0.1:{http}",
                           "--gossip-addr", f"127.0.0.1:{gossip}", "--seeds", seed, "--zone", f"zone-{i}"],
                    skew=AHEAD if name == "storage-3" else None)
        c.start("gateway-1", ["gateway", "--s3-addr", f"127.0.0.1:{gw1}", "--gossip-addr", f"127.0.0.1:{gg1}",
                              "--seeds", seed, "--admin-addr", f"127.0.0.1:{admin}"])
        c.start("gateway-2", ["gateway", "--s3-addr", f"127.0.0.1:{gw2}", "--gossip-addr", f"127.0.0.1:{gg2}",
                              "--seeds", seed], skew=AHEAD)
        c.start("gateway-3", ["gateway", "--s3-addr", f"127.0.0.1:{gw3}", "--gossip-addr", f"127.0.0.1:{gg3}",
                              "--seeds", seed], skew=BEHIND)
        good, skewed, behind = s3(gw1), s3(gw2), s3(gw3)

        deadline = time.time() + START_TIMEOUT
        layout = {}
        while time.time() < deadline:
            try:
                layout = json.loads(http_get(f"http://127.0.0.1:{admin}/v1/layout", "clock-test-admin-token"))
                if layout.get("epoch", 0) >= 1 and len(layout.get("versions", [{}])[0].get("members", [])) == 3:
                    good.create_bucket(Bucket="clocks")
                    break
            except Exception:
                pass
            time.sleep(0.5)
        if not check("the cluster forms with a node 10 minutes ahead leading it",
                     layout.get("epoch", 0) >= 1, f"layout {layout}"):
            return 1

        before = time.time()
        good.put_object(Bucket="clocks", Key="k", Body=b"first")
        head = good.head_object(Bucket="clocks", Key="k")
        modified = head["LastModified"].timestamp()
        check("an object written through the correct gateway carries the correct time",
              abs(modified - before) < 30, f"LastModified {head['LastModified']}, now {datetime.now(timezone.utc)}")

        try:
            skewed.put_object(Bucket="clocks", Key="from-the-future", Body=b"x")
            ok, detail = False, "the write was acknowledged"
        except ClientError as e:
            message = e.response.get("Error", {}).get("Message", "")
            code = e.response["ResponseMetadata"]["HTTPStatusCode"]
            ok, detail = code == 503 and "clock" in message, f"HTTP {code}: {message}"
        check("a write through the gateway 10 minutes ahead is refused, naming the clock", ok, detail)
        try:
            skewed.create_bucket(Bucket="future-bucket")
            ok, detail = False, "the bucket was created"
        except ClientError as e:
            code = e.response["ResponseMetadata"]["HTTPStatusCode"]
            ok, detail = code == 503, f"HTTP {code}: {e.response.get('Error', {}).get('Message', '')}"
        check("a conditional write (CreateBucket) through it is refused too", ok, detail)
        body = skewed.get_object(Bucket="clocks", Key="k")["Body"].read()
        check("reads through the skewed gateway work", body == b"first", repr(body))

        good.put_object(Bucket="clocks", Key="k", Body=b"second")
        body = good.get_object(Bucket="clocks", Key="k")["Body"].read()
        check("an overwrite through the correct gateway is what a read returns", body == b"second", repr(body))
        body = skewed.get_object(Bucket="clocks", Key="k")["Body"].read()
        check("and through the skewed gateway too", body == b"second", repr(body))
        good.put_bucket_tagging(Bucket="clocks", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
        tags = good.get_bucket_tagging(Bucket="clocks")["TagSet"]
        check("a bucket configuration change through the correct gateway holds", tags == [{"Key": "a", "Value": "b"}],
              str(tags))
        head = good.head_object(Bucket="clocks", Key="k")
        check("timestamps stay on the correct clock after the skewed node's writes",
              abs(head["LastModified"].timestamp() - time.time()) < 30, f"LastModified {head['LastModified']}")

        good.put_object(Bucket="clocks", Key="late", Body=b"through the correct gateway")
        behind.put_object(Bucket="clocks", Key="late", Body=b"through the gateway behind")
        body = good.get_object(Bucket="clocks", Key="late")["Body"].read()
        check("a write through the gateway 4 minutes behind wins over an earlier one",
              body == b"through the gateway behind", repr(body))
        head = good.head_object(Bucket="clocks", Key="late")
        check("and carries the cluster's time, not its own",
              abs(head["LastModified"].timestamp() - time.time()) < 30, f"LastModified {head['LastModified']}")

        # Every replica is read by the listing and by each storage node's
        # anti-entropy: a part of a refused write kept anywhere would show.
        keys = [o["Key"] for o in good.list_objects_v2(Bucket="clocks").get("Contents", [])]
        check("nothing from the gateway ahead was stored", keys == ["k", "late"], str(keys))
        buckets = [b["Name"] for b in good.list_buckets().get("Buckets", [])]
        check("nor the bucket it tried to create", "future-bucket" not in buckets, str(buckets))

        text = http_get(f"http://127.0.0.1:{admin}/metrics")
        refused = metric(text, "flexdrive_hlc_future_timestamps_total")
        check("the correct gateway did not follow the timestamps stamped 10 minutes ahead (it counted them)",
              refused > 0, f"flexdrive_hlc_future_timestamps_total = {refused}")
    except Exception as e:
        check("the test runs to its end", False, f"{type(e).__name__}: {e}")
    finally:
        c.stop()
        alive = c.alive()
        check("every process the test started is stopped", not alive, str(alive))
        if failed == 0 and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# logs kept in {work}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
