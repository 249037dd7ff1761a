#!/usr/bin/env python3
"""The documented upgrade from the previous release, with real processes,
while S3 keeps serving: a rolling-upgrade test.

What it does:

  1. Binaries: the new one (--new, default target/release/flexdrive) and the
     previous release (--old, or env FLEXDRIVE_OLD_BIN; without either it
     builds the commit named in conformance/upgrade/previous-release:
     `git archive` of it into WORKDIR/old, then `cargo build --release
     --locked --bin flexdrive` there with CARGO_TARGET_DIR=<repo>/target, so
     that compiled dependencies are reused; the repository's
     target/release/flexdrive is copied aside before and put back after,
     and the old binary is copied to WORKDIR).
  2. Starts a cluster of the previous release with deploy/local-cluster.sh
     (5 storage nodes, 2 gateways), creates a bucket, preloads 200 objects
     (5 of 2-3 MiB), a versioned bucket (versions and a delete marker) and a
     conditional create (If-None-Match: *), and records that model.
  3. Starts a client load that runs for the whole upgrade: threads doing
     PUT/GET/DELETE/LIST on their own keys (new keys are created with
     If-None-Match: *; GETs also read the preloaded objects), alternating
     between the two gateways; a request that gets a connection error or a
     5xx is tried once more on the other gateway, as a client with two
     endpoints would. Two more threads race conditional creates
     (If-None-Match: *) on the same key through both gateways every 0.5-1.5 s.
  4. Phase 1: restarts every storage process, one at a time, on the new
     binary with --legacy-peers (TERM, bounded wait, KILL; same data dir,
     addresses, zone and environment as local-cluster.sh gives it, plus an
     --admin-addr for its /metrics; storage node 1 is every restarted
     process's only seed, on purpose: restarted, it spends seconds alone,
     the case where a node must not believe it leads the layout and take
     the others for down), waits until it is alive again
     in `admin --json node list` and in its own view of the cluster, then a
     few seconds more; then the two gateways the same way (gateway 1 keeps
     the admin API). Checks: every member alive, layout epoch >= 1 (every
     storage node runs the new release, so the layout got decided), the
     model reads back.
  5. Phase 2: the same rolling restart without --legacy-peers. Checks:
     every member alive, the layout epoch unchanged or higher with one
     version of the 5 storage nodes and no transition, the model reads back.
  6. An impostor: one more storage node of the previous release (fresh data
     dir, own ports, the cluster's seed and secret): unauthenticated but
     well-formed gossip. For about 15 s it must never show in the node list,
     the status members or the layout, and the storage nodes'
     flexdrive_gossip_datagrams_dropped_total must rise. Then it is stopped.
  7. Stops the load and checks: no request failed on both gateways, no GET
     of an acknowledged key answered 404 or other bytes (nor a deleted key
     200), every conditional-create race has exactly one winner, every
     acknowledged write reads back identical, the bucket listing equals the
     model; and no layout epoch that a storage node decided (its `layout:
     epoch decided` log line) calls a majority of its members unavailable.
     Stops every process and prints a summary (requests by outcome per
     phase, failovers and their causes, failures on both gateways with the
     S3 error message, violations, the decided epochs, time per phase).

A write or delete that failed on both gateways leaves its key uncertain
(not judged) until the next acknowledged write or delete of it; a create
that failed on one gateway and got 412 on the other is uncertain too (the
first try may have written it: the test reads the key at once and reports
what it holds).

Output follows conformance/transitions.py: one `ok - <check>` or
`FAIL - <check>: <reason>` line per check, `# ...` progress lines, a
summary, then `N passed, M failed`; exit status 1 if anything failed. Every
wait is bounded; every process it started is stopped at the end, also on
failure or Ctrl-C. The work dir (cluster data, DIR/logs/, the build) is
kept on failure or with --keep, and its path printed.

Run from anywhere (Python 3.9+, boto3, curl and git on PATH):

    conformance/upgrade/rolling.py --old /path/to/flexdrive-0.1    # ~2.5 minutes
    FLEXDRIVE_OLD_BIN=/path/to/flexdrive-0.1 conformance/upgrade/rolling.py --keep
    conformance/upgrade/rolling.py      # builds the previous release first (minutes, unless target/ has it)

Options: --new BIN, --old BIN, --threads N (load threads, default 3),
--settle S (seconds after each restart, default 3), --impostor-seconds S
(default 15), --steady-seconds S (load on the old cluster before phase 1,
default 5), --seed N, --keep.
"""

import argparse
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LOCAL_CLUSTER = os.path.join(REPO, "deploy", "local-cluster.sh")
PREVIOUS_RELEASE = os.path.join(HERE, "previous-release")
REGION = "us-east-1"
BUCKET = "rolling"
VBUCKET = "rolling-versions"
STORAGE = 5
GATEWAYS = 2

# Limits (seconds unless said otherwise).
BUILD_TIMEOUT = 45 * 60      # building the previous release
START_TIMEOUT = 180          # local-cluster.sh start
STOP_TIMEOUT = 60            # local-cluster.sh stop (it KILLs after 15 s)
ADMIN_TIMEOUT = 15           # one `flexdrive admin` call
CLUSTER_UP_WAIT = 60         # every member alive and the bucket created
PROCESS_STOP_WAIT = 15       # TERM, then KILL
REJOIN_WAIT = 60             # a restarted process alive again
MEMBERS_WAIT = 30            # after a phase: every member alive
LAYOUT_WAIT = 45             # after a phase: the layout as expected
LOAD_STOP_WAIT = 60          # load threads finish their current request
BARRIER_TIMEOUT = 60         # racers meet (one may be in a slow request)
RACE_INTERVAL = (0.5, 1.5)
S3_CONNECT_TIMEOUT = 5
S3_READ_TIMEOUT = 20
MAX_DETAILS = 30             # violations / failures listed in detail

# Ports from the base port P (a block of 100, outside the ephemeral range):
#   as deploy/local-cluster.sh: gateways P+j-1, storage HTTP P+20+i-1,
#   storage gossip P+40+i-1, gateway gossip P+60+j-1, admin API P+80;
#   this test: storage i's /metrics P+80+i, the impostor P+90..P+92.
PORT_BLOCK = 100

PRELOAD_KEYS = 200
PRELOAD_LARGE = {7, 47, 87, 127, 167}     # 2-3 MiB
SMALL_SIZE = (512, 32 * 1024)
LARGE_SIZE = (2 * 1024 * 1024, 3 * 1024 * 1024)
LOAD_LARGE_FRACTION = 0.02
LOAD_MAX_KEYS = 300                       # per load thread

T0 = time.monotonic()


def log(msg):
    print(f"# [{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Interrupted(BaseException):
    pass


class Aborted(Exception):
    """A step failed so that going on makes no sense (already reported)."""


# --------------------------------------------------------------------------
# Small helpers


def body_for(seed, size):
    return random.Random(seed).randbytes(size)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_s3(endpoint, access_key, secret_key, attempts=1):
    """A path-style client; attempts=1: no retries, every answer is seen."""
    kwargs = dict(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=S3_CONNECT_TIMEOUT,
        read_timeout=S3_READ_TIMEOUT,
        max_pool_connections=8,
    )
    try:
        cfg = Config(request_checksum_calculation="when_required",
                     response_checksum_validation="when_required", **kwargs)
    except TypeError:  # older botocore
        cfg = Config(**kwargs)
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=cfg)


def status_of(exc):
    """'404', '503', ... for an S3 answer; the exception's name otherwise."""
    if isinstance(exc, ClientError):
        st = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(st) if st else "no-status"
    return type(exc).__name__


def describe(exc, message=False):
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        text = f"{status_of(exc)} {err.get('Code', '')}".strip()
        if message and err.get("Message"):
            text += f" ({err['Message']})"
        return text
    return type(exc).__name__


def retryable(exc):
    """A connection error, a timeout or a 5xx: the other gateway may do."""
    if isinstance(exc, ClientError):
        return status_of(exc).startswith("5") or status_of(exc) == "no-status"
    return True


def http_get(url, timeout=3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception:  # noqa: BLE001
        return None, ""


def parse_metrics(text):
    """{'name{labels}': value} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def metric_sum(metrics, name, **labels):
    total = 0.0
    for k, v in metrics.items():
        if k == name or k.startswith(name + "{"):
            if all(f'{lk}="{lv}"' in k for lk, lv in labels.items()):
                total += v
    return total


def ephemeral_ports():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port_block():
    """A base port whose block (TCP and UDP) is free now and lies outside
    the kernel's ephemeral range: processes bind their ports again minutes
    later, and an outgoing connection must not hold one by then."""
    lo, hi = ephemeral_ports()
    candidates = [b for b in range(10000, 65400, 100) if b + PORT_BLOCK <= lo or b > hi]
    for _ in range(200):
        base = random.choice(candidates)
        socks = []
        try:
            for off in range(PORT_BLOCK):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    return None


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --------------------------------------------------------------------------
# Building the previous release


def build_previous_release(work):
    """Builds the commit named in previous-release; returns the binary's
    path in `work`. Raises RuntimeError with the reason."""
    try:
        with open(PREVIOUS_RELEASE) as f:
            commit = f.read().split()[0]
    except (OSError, IndexError) as e:
        raise RuntimeError(f"cannot read the previous release's commit from {PREVIOUS_RELEASE}: {e}")
    probe = subprocess.run(["git", "-C", REPO, "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(
            f"commit {commit} (from {os.path.relpath(PREVIOUS_RELEASE, REPO)}) is not in the git "
            f"history of {REPO}: fetch it (git fetch origin {commit}), or give the previous "
            f"release's binary with --old BIN or FLEXDRIVE_OLD_BIN")
    src = os.path.join(work, "old")
    os.makedirs(src)
    log(f"building the previous release {commit[:12]} in {src} (git archive | tar -x)")
    archive = subprocess.Popen(["git", "-C", REPO, "archive", commit], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, capture_output=True)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise RuntimeError(f"git archive {commit} | tar -x failed: {untar.stderr.decode()[-500:]}")

    target = os.path.join(REPO, "target")
    uplifted = os.path.join(target, "release", "flexdrive")
    aside = {}
    for name in ("flexdrive", "flexdrive.d"):
        path = os.path.join(target, "release", name)
        if os.path.isfile(path):
            keep = os.path.join(work, f"aside-{name}")
            shutil.copy2(path, keep)  # a copy: never a link to the file cargo replaces
            aside[path] = keep
    built = os.path.join(work, f"flexdrive-{commit[:7]}")
    build_log = os.path.join(work, "old-build.log")
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    cmd = ["cargo", "build", "--release", "--locked", "--bin", "flexdrive"]
    log(f"  {' '.join(cmd)} (CARGO_TARGET_DIR={target}; log {build_log}; "
        f"target/release/flexdrive set aside and put back after)")
    t = time.monotonic()
    cargo = None
    try:
        with open(build_log, "w") as out:
            cargo = subprocess.Popen(cmd, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = cargo.wait(timeout=BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            with open(build_log) as f:
                tail = " | ".join(f.read().splitlines()[-8:])
            raise RuntimeError(f"cargo build of {commit[:12]} failed ({rc}): {tail}")
        shutil.copy2(uplifted, built)
        log(f"  built in {time.monotonic() - t:.0f}s: {built}")
        return built
    finally:
        if cargo is not None and cargo.poll() is None:
            try:
                os.killpg(cargo.pid, signal.SIGTERM)
                cargo.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(cargo.pid, signal.SIGKILL)
                except OSError:
                    pass
                cargo.wait()
        # Put the working tree's binary back (a new file renamed over the
        # path: the old build's file may be a hard link into deps/).
        for path, keep in aside.items():
            tmp = path + ".rolling-restore"
            shutil.copy2(keep, tmp)
            os.replace(tmp, path)
            os.unlink(keep)
        if uplifted not in aside and os.path.exists(uplifted):
            os.unlink(uplifted)  # there was none: leave none
        if aside:
            log("  target/release/flexdrive restored")


# --------------------------------------------------------------------------
# The cluster


class Cluster:
    def __init__(self, work, base, old_bin, new_bin):
        self.work = work
        self.dir = os.path.join(work, "cluster")
        self.base = base
        self.old_bin = old_bin
        self.new_bin = new_bin
        self.env = {}                 # cluster.env
        self.popen = {}               # pid -> Popen (processes this test spawned)
        self.seen = {}                # pid -> name (every cluster process we knew)
        self.storage = {}             # name -> {"http", "gossip", "zone", "metrics", "id"}
        self.gateways = {}            # name -> {"s3", "gossip", "admin", "id"}
        self.replaced_gateway_ids = set()
        self.impostor = None          # {"pid", "id", ...}

    # -- addresses

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.base + 80}"

    @property
    def endpoints(self):
        return [f"http://127.0.0.1:{self.base + j}" for j in range(GATEWAYS)]

    @property
    def seed(self):
        return f"127.0.0.1:{self.base + 40}"

    # -- environment of the processes: cluster.env, no FLEXDRIVE_* of ours

    def proc_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXDRIVE_")}
        env.update(self.env)
        return env

    def start(self):
        logf = os.path.join(self.work, "start.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXDRIVE_")}
        env["FLEXDRIVE_BIN"] = self.old_bin
        cmd = [LOCAL_CLUSTER, "start", "--storage", str(STORAGE), "--gateways", str(GATEWAYS),
               "--dir", self.dir, "--base-port", str(self.base)]
        try:
            with open(logf, "w") as f:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    timeout=START_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        finally:
            self.note_pids()
        with open(logf) as f:
            tail = " ".join(f.read().splitlines()[-5:])
        if rc != 0:
            return False, tail
        with open(os.path.join(self.dir, "cluster.env")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    self.env[k] = v
        with open(os.path.join(self.dir, "layout")) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
                name = parts[0]
                if parts[1] == "storage":
                    i = int(name.split("-")[1])
                    self.storage[name] = {"i": i, "http": kv["http"], "gossip": kv["gossip"],
                                          "zone": kv["zone"], "id": None,
                                          "metrics": f"127.0.0.1:{self.base + 80 + i}"}
                elif parts[1] == "gateway":
                    j = int(name.split("-")[1])
                    self.gateways[name] = {"j": j, "s3": kv["s3"].replace("http://", ""),
                                           "gossip": kv["gossip"], "id": None}
        return True, tail

    def note_pids(self):
        piddir = os.path.join(self.dir, "pids")
        if not os.path.isdir(piddir):
            return
        for fname in os.listdir(piddir):
            try:
                with open(os.path.join(piddir, fname)) as f:
                    self.seen[int(f.read().strip())] = fname[:-4]
            except (OSError, ValueError):
                pass

    def alive(self, pid):
        p = self.popen.get(pid)
        if p is not None:
            return p.poll() is None
        # Not our child (local-cluster.sh started it): ours only if it runs a
        # program from our work dir (guards against a reused pid).
        cmd = proc_cmdline(pid)
        return (bool(cmd) and cmd[0].decode(errors="replace").startswith(os.path.join(self.work, ""))
                and b"--gossip-addr" in cmd and not is_zombie(pid))

    def pid_of(self, name):
        try:
            with open(os.path.join(self.dir, "pids", f"{name}.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if self.alive(pid) else None

    # -- admin API (always through the new binary's `admin`)

    def admin(self, *args, timeout=ADMIN_TIMEOUT):
        env = dict(os.environ, FLEXDRIVE_ADMIN_TOKEN=self.env.get("FLEXDRIVE_ADMIN_TOKEN", ""))
        cmd = [self.new_bin, "admin", "--admin-endpoint", self.admin_url, "--json", *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
            return p.returncode, p.stdout, p.stderr.strip()
        except subprocess.TimeoutExpired:
            return -1, "", f"timed out after {timeout}s"

    def status(self):
        rc, out, _ = self.admin("status")
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def node_list(self):
        rc, out, _ = self.admin("node", "list")
        if rc != 0:
            return None
        try:
            return json.loads(out).get("nodes")
        except ValueError:
            return None

    def own_view(self, name):
        """What a storage process (with --admin-addr) sees: its /metrics."""
        st, text = http_get(f"http://{self.storage[name]['metrics']}/metrics")
        return parse_metrics(text) if st == 200 else None

    # -- processes

    def spawn(self, name, binary, args, logname=None):
        logpath = os.path.join(self.dir, "logs", f"{logname or name}.log")
        with open(logpath, "ab") as logf:
            p = subprocess.Popen([binary, *args], stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, env=self.proc_env(),
                                 start_new_session=True)
        self.popen[p.pid] = p
        self.seen[p.pid] = name
        with open(os.path.join(self.dir, "pids", f"{name}.pid"), "w") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop_process(self, name, pid=None):
        """TERM, KILL after a bounded wait. Returns (gone, how)."""
        pid = pid or self.pid_of(name)
        if pid is None:
            return True, "was not running"
        self.seen[pid] = name
        t = time.monotonic()
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return True, "was gone"
        while time.monotonic() - t < PROCESS_STOP_WAIT and self.alive(pid):
            time.sleep(0.1)
        how = f"exited {time.monotonic() - t:.1f}s after TERM"
        if self.alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.alive(pid):
                time.sleep(0.1)
            how = f"KILLed after {PROCESS_STOP_WAIT}s of TERM"
        return not self.alive(pid), how

    def storage_args(self, name, legacy):
        s = self.storage[name]
        args = ["storage", "--data-dir", os.path.join(self.dir, name), "--http-addr", s["http"],
                "--gossip-addr", s["gossip"], "--seeds", self.seed, "--zone", s["zone"],
                "--admin-addr", s["metrics"]]
        return args + (["--legacy-peers"] if legacy else [])

    def gateway_args(self, name, legacy):
        g = self.gateways[name]
        args = ["gateway", "--s3-addr", g["s3"], "--gossip-addr", g["gossip"], "--seeds", self.seed]
        if g["j"] == 1:
            args += ["--admin-addr", f"127.0.0.1:{self.base + 80}"]
        return args + (["--legacy-peers"] if legacy else [])

    def log_tail(self, name, lines=8):
        try:
            with open(os.path.join(self.dir, "logs", f"{name}.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop_all(self):
        self.note_pids()
        if self.impostor and self.alive(self.impostor["pid"]):
            self.stop_process("impostor", self.impostor["pid"])
        if os.path.isdir(os.path.join(self.dir, "pids")):
            try:
                subprocess.run([LOCAL_CLUSTER, "stop", "--dir", self.dir], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for pid in list(self.seen):
            if self.alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.popen.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def left_running(self):
        return sorted((self.seen[p], p) for p in self.seen if self.alive(p))


def processes_under(prefix):
    """Pids of running processes whose program lies under `prefix` (the
    binaries this test links into its work dir)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            cmd = proc_cmdline(int(d))
            if cmd and cmd[0].decode(errors="replace").startswith(prefix) and not is_zombie(int(d)):
                found.append(int(d))
    return found


# --------------------------------------------------------------------------
# The client load


class Load:
    """Load threads (own keys, failover between the gateways) and two
    racing threads (conditional creates). Everything they count is keyed by
    the phase the request started in."""

    def __init__(self, cluster, threads, pause, seed, preload_keys, preload_model):
        self.c = cluster
        self.n = threads
        self.pause = pause
        self.seed = seed
        self.preload_keys = preload_keys
        self.preload_model = preload_model
        self.phase = PHASES[1]
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counts = Counter()          # (phase, op, outcome)
        self.failover_causes = Counter()  # (phase, "gwN cause")
        self.both = []                   # failed on both gateways: details
        self.both_count = Counter()      # phase -> n
        self.violations = Counter()      # (phase, kind)
        self.details = []
        self.unexpected = Counter()      # (phase, op, answer): 4xx nobody expects
        self.models = [dict() for _ in range(threads)]
        self.races = defaultdict(dict)   # round -> racer -> entry
        self.refused_after_failover = []  # creates: 5xx/conn, then 412: (key, sha, phase)
        self.first_try = threading.local()  # .cause: the failed first try of the last failover
        self.errors = []
        self.barrier = threading.Barrier(2)
        self.threads = []
        self.ops = 0

    def start(self):
        for i in range(self.n):
            t = threading.Thread(target=self.guard, args=(self.worker, i), name=f"load-{i}",
                                 daemon=True)
            t.start()
            self.threads.append(t)
        for k in range(2):
            t = threading.Thread(target=self.guard, args=(self.racer, k), name=f"race-{k}",
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        self.barrier.abort()
        deadline = time.monotonic() + LOAD_STOP_WAIT
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    def guard(self, fn, i):
        try:
            fn(i)
        except Exception:  # noqa: BLE001 - reported at the end
            with self.lock:
                self.errors.append(traceback.format_exc())

    def clients(self):
        ak, sk = self.c.env["FLEXDRIVE_ROOT_ACCESS_KEY"], self.c.env["FLEXDRIVE_ROOT_SECRET_KEY"]
        return [make_s3(e, ak, sk) for e in self.c.endpoints]

    # -- bookkeeping

    def count(self, phase, op, outcome):
        with self.lock:
            self.counts[(phase, op, outcome)] += 1
            self.ops += 1

    def violation(self, phase, kind, key, detail, gw):
        with self.lock:
            self.violations[(phase, kind)] += 1
            if len(self.details) < MAX_DETAILS:
                self.details.append(f"t={time.monotonic() - T0:.1f}s {phase}: {kind}: {key} "
                                    f"(gateway {gw + 1}; {detail})")

    def call(self, phase, op, key, clients, first, fn):
        """fn(client) on gateway `first`; on a connection error or a 5xx,
        once more on the other one. Returns (result, exc, gateway, failed_over);
        exc is set when the last try raised (a 4xx answer, or failure on both)."""
        try:
            return fn(clients[first]), None, first, False
        except Exception as e:  # noqa: BLE001
            if not retryable(e):
                return None, e, first, False
            cause, told = describe(e), describe(e, message=True)
        other = 1 - first
        self.first_try.cause = f"gateway {first + 1}: {told}"
        with self.lock:
            self.failover_causes[(phase, f"gateway {first + 1}: {cause}")] += 1
        try:
            return fn(clients[other]), None, other, True
        except Exception as e:  # noqa: BLE001
            if retryable(e):
                with self.lock:
                    self.both_count[phase] += 1
                    if len(self.both) < MAX_DETAILS:
                        self.both.append(f"t={time.monotonic() - T0:.1f}s {phase}: {op} {key}: "
                                         f"gateway {first + 1} {told}, gateway {other + 1} "
                                         f"{describe(e, message=True)}")
            return None, e, other, True

    @staticmethod
    def outcome(ok_status, exc, failed_over):
        if exc is None:
            out = ok_status
        elif retryable(exc):
            return "failed on both gateways"
        else:
            out = describe(exc)
        return out + (" (after failover)" if failed_over else "")

    # -- the load threads

    def worker(self, i):
        rng = random.Random(self.seed * 100 + i)
        clients = self.clients()
        model = self.models[i]  # key -> {"live", "sha", "size", "unc"}
        prefix = f"load/t{i}/"
        turn = i
        new_keys = 0

        def next_gw():
            nonlocal turn
            turn += 1
            return turn % 2

        while not self.stop.is_set():
            phase = self.phase
            p = rng.random()
            keys = list(model)
            if not keys or (p < 0.12 and new_keys < LOAD_MAX_KEYS):
                new_keys += 1
                self.put(phase, clients, next_gw(), model, f"{prefix}k{new_keys:04d}", rng,
                         create=True)
            elif p < 0.32:
                self.put(phase, clients, next_gw(), model, rng.choice(keys), rng)
            elif p < 0.44:
                self.delete(phase, clients, next_gw(), model, rng.choice(keys))
            elif p < 0.49:
                self.list_own(phase, clients, next_gw(), model, prefix)
            elif p < 0.80:
                self.get(phase, clients, next_gw(), model, rng.choice(keys))
            else:
                self.get(phase, clients, next_gw(), self.preload_model,
                         rng.choice(self.preload_keys))
            if self.pause:
                self.stop.wait(self.pause)

    def put(self, phase, clients, gw, model, key, rng, create=False):
        """A PUT; `create`: of a key never written, with If-None-Match: *."""
        lo, hi = LARGE_SIZE if rng.random() < LOAD_LARGE_FRACTION else SMALL_SIZE
        size = rng.randint(lo, hi)
        data = rng.randbytes(size)
        extra = {"IfNoneMatch": "*"} if create else {}
        op = "create" if create else "put"
        _, exc, used, fo = self.call(phase, op, key, clients, gw,
                                     lambda c: c.put_object(Bucket=BUCKET, Key=key, Body=data, **extra))
        out = self.outcome("200", exc, fo)
        self.count(phase, op, out)
        if exc is None:
            model[key] = {"live": True, "sha": sha(data), "size": size, "unc": False}
        elif retryable(exc):
            model.setdefault(key, {"live": False, "sha": None, "size": 0})["unc"] = True
        elif create and status_of(exc) == "412":
            # After a failover the first try may have written it: uncertain.
            # On a first try, the key was never written: refusing is wrong.
            if not fo:
                self.violation(phase, "create of a new key refused (412)", key, describe(exc), used)
            else:
                # Look at once (own key, nobody else writes it): did the
                # failed first try write it after all?
                try:
                    got = clients[used].get_object(Bucket=BUCKET, Key=key)["Body"].read()
                    held = "its own body" if sha(got) == sha(data) else f"other bytes ({len(got)})"
                except Exception as e:  # noqa: BLE001
                    held = describe(e)
                with self.lock:
                    self.refused_after_failover.append(
                        (key, phase, getattr(self.first_try, "cause", "?"), held))
            model.setdefault(key, {"live": False, "sha": None, "size": 0})["unc"] = True
        else:
            with self.lock:
                self.unexpected[(phase, "put", describe(exc))] += 1
            model.setdefault(key, {"live": False, "sha": None, "size": 0})["unc"] = True

    def delete(self, phase, clients, gw, model, key):
        _, exc, _, fo = self.call(phase, "delete", key, clients, gw,
                                  lambda c: c.delete_object(Bucket=BUCKET, Key=key))
        self.count(phase, "delete", self.outcome("204", exc, fo))
        if exc is None:
            model[key] = {"live": False, "sha": None, "size": 0, "unc": False}
        else:
            if not retryable(exc):
                with self.lock:
                    self.unexpected[(phase, "delete", describe(exc))] += 1
            model[key]["unc"] = True

    def get(self, phase, clients, gw, model, key):
        def fetch(c):
            r = c.get_object(Bucket=BUCKET, Key=key)
            return r["Body"].read()  # a body that breaks off counts as a connection error

        data, exc, used, fo = self.call(phase, "get", key, clients, gw, fetch)
        self.count(phase, "get", self.outcome("200", exc, fo))
        e = model.get(key)
        if e is None or e.get("unc"):
            return
        if exc is not None:
            if status_of(exc) == "404":
                if e["live"]:
                    self.violation(phase, "404 on an acknowledged key", key, describe(exc), used)
            elif not retryable(exc):
                with self.lock:
                    self.unexpected[(phase, "get", describe(exc))] += 1
            return
        if not e["live"]:
            self.violation(phase, "deleted key answered 200", key, f"{len(data)} bytes", used)
        elif sha(data) != e["sha"]:
            self.violation(phase, "wrong bytes", key, f"{len(data)} bytes, expected {e['size']}", used)

    def list_own(self, phase, clients, gw, model, prefix):
        def lst(c):
            got, token = {}, None
            for _ in range(10):
                kw = {"Bucket": BUCKET, "Prefix": prefix, "MaxKeys": 1000}
                if token:
                    kw["ContinuationToken"] = token
                r = c.list_objects_v2(**kw)
                got.update({o["Key"]: o["Size"] for o in r.get("Contents", [])})
                token = r.get("NextContinuationToken")
                if not r.get("IsTruncated"):
                    break
            return got

        got, exc, used, fo = self.call(phase, "list", prefix, clients, gw, lst)
        self.count(phase, "list", self.outcome("200", exc, fo))
        if exc is not None:
            if not retryable(exc):
                with self.lock:
                    self.unexpected[(phase, "list", describe(exc))] += 1
            return
        for key, e in list(model.items()):
            if e.get("unc"):
                continue
            if e["live"] and got.get(key) != e["size"]:
                self.violation(phase, "listing disagrees", key,
                               f"listed size {got.get(key)}, expected {e['size']}", used)
            elif not e["live"] and key in got:
                self.violation(phase, "listing disagrees", key, "deleted key listed", used)
        for key in got:
            if key not in model:
                self.violation(phase, "listing disagrees", key, "a key never written listed", used)

    # -- the racers

    def racer(self, k):
        rng = random.Random(self.seed * 100 + 50 + k)
        clients = self.clients()
        rnd = 0
        while not self.stop.is_set():
            # Both racers wait the same: the barrier is the rendezvous.
            if self.stop.wait(rng.uniform(*RACE_INTERVAL) if k == 0 else 0.0):
                break
            try:
                self.barrier.wait(timeout=BARRIER_TIMEOUT)
            except threading.BrokenBarrierError:
                if self.stop.is_set():
                    break
                with self.lock:
                    self.errors.append(f"racer {k}: barrier broken in round {rnd + 1}")
                break
            rnd += 1
            phase = self.phase
            fired = time.monotonic() - T0
            key = f"race/r{rnd:04d}"
            body = f"race {rnd} racer {k} {uuid.uuid4().hex}".encode()
            gw = (k + rnd) % 2

            def cput(c):
                return c.put_object(Bucket=BUCKET, Key=key, Body=body, IfNoneMatch="*")

            _, exc, _, fo = self.call(phase, "race-put", key, clients, gw, cput)
            out = self.outcome("200", exc, fo)
            self.count(phase, "race-put", out)
            if exc is not None and not retryable(exc) and status_of(exc) not in ("412", "409"):
                with self.lock:
                    self.unexpected[(phase, "race-put", describe(exc))] += 1
            with self.lock:
                self.races[rnd][k] = {"outcome": out, "won": exc is None, "ambiguous": fo or (
                    exc is not None and retryable(exc)), "body": body, "phase": phase, "gw": gw,
                    "fired": fired}


# --------------------------------------------------------------------------
# The run


PHASES = ["setup", "steady (0.1)", "phase 1: storage", "phase 1: gateways", "phase 1: checks",
          "phase 2: storage", "phase 2: gateways", "phase 2: checks", "impostor", "final"]


class Run:
    def __init__(self, args):
        self.args = args
        self.passed = 0
        self.failed = 0
        self.cluster = None
        self.load = None
        self.phase_times = []
        self.preload_model = {}    # key -> {"live", "sha", "size"}
        self.versions = None       # the versioned bucket's model
        self.cond = None           # (key, sha)
        self.epoch1 = None
        self.final_notes = []

    # -- reporting

    def ok(self, name):
        print(f"ok - {name}", flush=True)
        self.passed += 1

    def fail(self, name, reason):
        reason = " ".join(str(reason).split())
        print(f"FAIL - {name}: {reason[:900]}", flush=True)
        self.failed += 1

    def check(self, cond, name, reason):
        if cond:
            self.ok(name)
        else:
            self.fail(name, reason)
        return cond

    def set_phase(self, name):
        now = time.monotonic()
        if self.phase_times and self.phase_times[-1][2] is None:
            n, start, _ = self.phase_times[-1]
            self.phase_times[-1] = (n, start, now)
        self.phase_times.append((name, now, None))
        if self.load is not None:
            self.load.phase = name
        ops = f" (load: {self.load.ops} requests so far)" if self.load else ""
        log(f"phase: {name}{ops}")

    def end_phases(self):
        if self.phase_times and self.phase_times[-1][2] is None:
            n, start, _ = self.phase_times[-1]
            self.phase_times[-1] = (n, start, time.monotonic())

    def s3(self, gw=0, attempts=3):
        c = self.cluster
        return make_s3(c.endpoints[gw], c.env["FLEXDRIVE_ROOT_ACCESS_KEY"],
                       c.env["FLEXDRIVE_ROOT_SECRET_KEY"], attempts=attempts)

    # -- binaries

    def binaries(self):
        a = self.args
        work = a.work
        bindir = os.path.join(work, "bin")
        os.makedirs(bindir)
        new = os.path.abspath(a.new)
        if not (os.path.isfile(new) and os.access(new, os.X_OK)):
            self.fail("binaries", f"new binary {new} is not an executable file (build it: "
                      f"cargo build --release --bin flexdrive)")
            raise Aborted
        old = a.old or os.environ.get("FLEXDRIVE_OLD_BIN")
        if old:
            old = os.path.abspath(old)
            if not (os.path.isfile(old) and os.access(old, os.X_OK)):
                self.fail("binaries", f"old binary {old} (--old / FLEXDRIVE_OLD_BIN) is not an "
                          f"executable file")
                raise Aborted
            how = "given"
        else:
            t = time.monotonic()
            try:
                old = build_previous_release(work)
            except RuntimeError as e:
                self.fail("build the previous release", str(e))
                raise Aborted
            how = f"built from previous-release in {time.monotonic() - t:.0f}s"
            self.ok(f"previous release built ({how})")
        # Links in the work dir: the run is immune to a rebuild of the
        # originals, and every process of ours runs a program under it.
        a.new_bin = os.path.join(bindir, "flexdrive-new")
        a.old_bin = os.path.join(bindir, "flexdrive-old")
        link_or_copy(new, a.new_bin)
        link_or_copy(old, a.old_bin)
        log(f"new binary {new}; old binary {old} ({how}); run as links in {bindir}")

    # -- the run

    def run(self):
        a = self.args
        self.set_phase("setup")
        self.binaries()
        base = free_port_block()
        if base is None:
            self.fail("free ports", f"no free block of {PORT_BLOCK} ports outside the ephemeral range")
            raise Aborted
        self.cluster = c = Cluster(a.work, base, a.old_bin, a.new_bin)
        log(f"cluster dir {c.dir}, base port {base}")
        ok, tail = c.start()
        if not self.check(ok, "local-cluster.sh starts 5 storage nodes and 2 gateways of the "
                          "previous release", f"start failed: {tail}"):
            raise Aborted
        self.cluster_up()
        self.preload()

        self.load = Load(c, a.threads, a.op_pause, a.seed, sorted(self.preload_model),
                         self.preload_model)
        self.load.start()
        self.set_phase("steady (0.1)")
        self.sleep(a.steady_seconds)

        self.rolling(1, legacy=True)
        self.set_phase("phase 1: checks")
        self.after_phase(1)
        self.rolling(2, legacy=False)
        self.set_phase("phase 2: checks")
        self.after_phase(2)
        self.set_phase("impostor")
        self.impostor()
        self.set_phase("final")
        self.stop_load()
        self.final_checks()
        self.layout_history()
        self.end_phases()

    def sleep(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def cluster_up(self):
        """Every member alive (bounded), ids noted, the bucket created."""
        c = self.cluster
        deadline = time.monotonic() + CLUSTER_UP_WAIT
        nodes = None
        while time.monotonic() < deadline:
            nodes = c.node_list()
            if nodes and len(nodes) == STORAGE + GATEWAYS and all(n["state"] == "alive" for n in nodes):
                break
            time.sleep(0.5)
        by_http = {n.get("http_addr"): n for n in nodes or []}
        for s in c.storage.values():
            s["id"] = (by_http.get(s["http"]) or {}).get("id")
        for g in c.gateways.values():
            g["id"] = (by_http.get(g["s3"]) or {}).get("id")
        up = nodes is not None and all(s["id"] for s in c.storage.values()) and all(
            g["id"] for g in c.gateways.values()) and all(n["state"] == "alive" for n in nodes)
        if not self.check(up, "admin node list shows 5 storage nodes and 2 gateways alive",
                          f"after {CLUSTER_UP_WAIT}s: {json.dumps(nodes)[:500]}"):
            raise Aborted
        log("storage ids: " + ", ".join(f"{n}={s['id']}" for n, s in sorted(c.storage.items())))
        s3 = self.s3()
        last = ""
        deadline = time.monotonic() + CLUSTER_UP_WAIT
        while time.monotonic() < deadline:
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                    break
                last = describe(e)
            except Exception as e:  # noqa: BLE001
                last = describe(e)
            time.sleep(1)
        else:
            self.fail(f"bucket {BUCKET} created", f"not within {CLUSTER_UP_WAIT}s (last: {last})")
            raise Aborted
        self.ok(f"bucket {BUCKET} created")

    def preload(self):
        a = self.args
        rng = random.Random(a.seed)
        plan = []
        for i in range(PRELOAD_KEYS):
            size = rng.randint(*(LARGE_SIZE if i in PRELOAD_LARGE else SMALL_SIZE))
            plan.append((f"pre/{i:04d}", size))
        local = threading.local()
        turns = itertools.count()

        def put(item):
            key, size = item
            if not hasattr(local, "c"):
                local.c = self.s3(gw=next(turns) % 2)
            data = body_for(f"{a.seed}/{key}", size)
            try:
                local.c.put_object(Bucket=BUCKET, Key=key, Body=data)
                return key, sha(data), size, None
            except Exception as e:  # noqa: BLE001
                return key, None, size, describe(e)

        t = time.monotonic()
        failures = []
        with ThreadPoolExecutor(4) as pool:
            for key, digest, size, err in pool.map(put, plan):
                if err:
                    failures.append(f"{key}: {err}")
                else:
                    self.preload_model[key] = {"live": True, "sha": digest, "size": size, "unc": False}
        self.check(not failures, f"preload: {PRELOAD_KEYS} objects ({len(PRELOAD_LARGE)} of 2-3 MiB) "
                   f"written through both gateways ({time.monotonic() - t:.1f}s)",
                   f"{len(failures)} failed: {failures[:5]}")
        if failures:
            raise Aborted

        # A versioned bucket: versions and a delete marker.
        s3 = self.s3()
        try:
            s3.create_bucket(Bucket=VBUCKET)
            s3.put_bucket_versioning(Bucket=VBUCKET, VersioningConfiguration={"Status": "Enabled"})
            versions, markers = [], []
            for key, n in (("doc", 3), ("keep", 2)):
                for v in range(n):
                    data = body_for(f"{a.seed}/{key}/{v}", rng.randint(100, 5000))
                    r = s3.put_object(Bucket=VBUCKET, Key=key, Body=data)
                    versions.append((key, r["VersionId"], sha(data)))
            r = s3.delete_object(Bucket=VBUCKET, Key="doc")
            markers.append(("doc", r.get("VersionId")))
            self.versions = {"versions": versions, "markers": markers,
                             "current": {"keep": versions[-1][2]}, "gone": ["doc"]}
            good = all(v[1] for v in versions) and r.get("DeleteMarker") is True and len(
                {v[1] for v in versions}) == len(versions)
            self.check(good, f"versioned bucket: {len(versions)} versions of 2 keys and a delete "
                       f"marker written", f"versions {versions}, delete answer {r}")
        except Exception as e:  # noqa: BLE001
            self.fail("versioned bucket content written", describe(e))
            raise Aborted

        # A conditional create: the first wins, the second is refused.
        key = "cond/created-once"
        first = body_for(f"{a.seed}/cond/1", 777)
        second = body_for(f"{a.seed}/cond/2", 778)
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=first, IfNoneMatch="*")
            got = "200"
        except Exception as e:  # noqa: BLE001
            got = describe(e)
        try:
            self.s3(gw=1).put_object(Bucket=BUCKET, Key=key, Body=second, IfNoneMatch="*")
            again = "200"
        except Exception as e:  # noqa: BLE001
            again = status_of(e)
        self.cond = (key, sha(first), len(first))
        self.check(got == "200" and again == "412",
                   "conditional create (If-None-Match: *): 200, then 412 through the other gateway",
                   f"first {got}, second {again}")
        self.preload_model[key] = {"live": True, "sha": sha(first), "size": len(first), "unc": False}

    # -- rolling restarts

    def rolling(self, n, legacy):
        c = self.cluster
        flag = " --legacy-peers" if legacy else ""
        self.set_phase(f"phase {n}: storage")
        for name in sorted(c.storage, key=lambda x: c.storage[x]["i"]):
            self.restart_storage(n, name, legacy, flag)
        self.set_phase(f"phase {n}: gateways")
        for name in sorted(c.gateways, key=lambda x: c.gateways[x]["j"]):
            self.restart_gateway(n, name, legacy, flag)

    def restart_storage(self, n, name, legacy, flag):
        c = self.cluster
        s = c.storage[name]
        t = time.monotonic()
        gone, how = c.stop_process(name)
        if not self.check(gone, f"phase {n}: {name} stopped", how):
            raise Aborted
        p = c.spawn(name, c.new_bin, c.storage_args(name, legacy))
        deadline = time.monotonic() + REJOIN_WAIT
        seen_by_gw = own = False
        view = None
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            view = c.own_view(name)
            own = view is not None and metric_sum(view, "flexdrive_members", role="storage",
                                                  state="alive") >= STORAGE
            nodes = c.node_list() or []
            seen_by_gw = any(x.get("id") == s["id"] and x.get("state") == "alive" for x in nodes)
            if own and seen_by_gw:
                break
            time.sleep(0.5)
        dt = time.monotonic() - t
        back = p.poll() is None and own and seen_by_gw
        seen = metric_sum(view, "flexdrive_members", role="storage", state="alive") if view else None
        self.check(back, f"phase {n}: {name} restarted on the new release{flag} ({how}), alive again "
                   f"in node list and sees {STORAGE} storage nodes ({dt:.1f}s)",
                   f"after {REJOIN_WAIT}s: process {'running' if p.poll() is None else 'exited ' + str(p.returncode)}, "
                   f"alive in node list: {seen_by_gw}, storage nodes it sees alive: {seen}; "
                   f"log: {c.log_tail(name)}")
        if not back:
            raise Aborted
        self.sleep(self.args.settle)

    def restart_gateway(self, n, name, legacy, flag):
        c = self.cluster
        g = c.gateways[name]
        t = time.monotonic()
        old_id = g["id"]
        gone, how = c.stop_process(name)
        if not self.check(gone, f"phase {n}: {name} stopped", how):
            raise Aborted
        p = c.spawn(name, c.new_bin, c.gateway_args(name, legacy))
        s3 = self.s3(gw=g["j"] - 1, attempts=1)
        known = {x["id"] for x in c.gateways.values()} | c.replaced_gateway_ids
        deadline = time.monotonic() + REJOIN_WAIT
        new_id, serves, last = None, False, ""
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            nodes = c.node_list() or []
            new_id = next((x["id"] for x in nodes if x.get("role") == "gateway"
                           and x.get("http_addr") == g["s3"] and x.get("id") not in known
                           and x.get("state") == "alive"), None)
            if new_id and not serves:
                try:
                    s3.head_bucket(Bucket=BUCKET)
                    serves = True
                except Exception as e:  # noqa: BLE001
                    last = describe(e)
            if new_id and serves:
                break
            time.sleep(0.5)
        dt = time.monotonic() - t
        back = p.poll() is None and bool(new_id) and serves
        self.check(back, f"phase {n}: {name} restarted on the new release{flag} ({how}), alive again "
                   f"in node list as {new_id} and serving S3 ({dt:.1f}s)",
                   f"after {REJOIN_WAIT}s: process {'running' if p.poll() is None else 'exited ' + str(p.returncode)}, "
                   f"new member id: {new_id}, HeadBucket: {'ok' if serves else last}; "
                   f"log: {c.log_tail(name)}")
        if not back:
            raise Aborted
        c.replaced_gateway_ids.add(old_id)
        g["id"] = new_id
        self.sleep(self.args.settle)

    # -- checks after a phase

    def members_ok(self, members):
        """(ok, reason): the 7 current processes alive; other entries only
        earlier incarnations of restarted gateways, not alive."""
        c = self.cluster
        current = {s["id"] for s in c.storage.values()} | {g["id"] for g in c.gateways.values()}
        alive = {m["id"] for m in members if m.get("state") == "alive"}
        missing = current - alive
        extra = [m for m in members if m["id"] not in current]
        bad = [m for m in extra if m["id"] not in c.replaced_gateway_ids or m.get("state") == "alive"]
        stale = [m["id"] for m in extra if m not in bad]
        if missing or bad:
            return False, (f"not alive: {sorted(missing)}; unexpected: "
                           f"{[(m['id'], m.get('role'), m.get('state')) for m in bad]}")
        return True, (f"{len(current)} alive" + (f"; {len(stale)} earlier gateway incarnations shown "
                                                  f"as down" if stale else ""))

    def after_phase(self, n):
        c = self.cluster
        deadline = time.monotonic() + MEMBERS_WAIT
        why_nl = why_st = "no answer"
        good = False
        while True:
            nodes = c.node_list()
            st = c.status()
            ok_nl, why_nl = self.members_ok(nodes) if nodes is not None else (False, "node list failed")
            ok_st, why_st = (self.members_ok(st.get("members", [])) if st is not None
                             else (False, "status failed"))
            if ok_nl and ok_st:
                good = True
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(1)
        self.check(good, f"after phase {n}: every member alive in node list and status ({why_nl})",
                   f"after {MEMBERS_WAIT}s: node list: {why_nl}; status: {why_st}")

        storage_ids = sorted(s["id"] for s in c.storage.values())
        deadline = time.monotonic() + LAYOUT_WAIT
        t = time.monotonic()
        lay = None
        while True:
            st = c.status()
            lay = st.get("layout") if st else None
            if isinstance(lay, dict):
                epoch = lay.get("epoch") or 0
                versions = lay.get("versions") or []
                if n == 1:
                    good = epoch >= 1
                else:
                    good = (epoch >= (self.epoch1 or 1) and len(versions) == 1
                            and sorted(versions[0].get("members", [])) == storage_ids
                            and lay.get("transitions") == [])
                if good:
                    break
            if time.monotonic() >= deadline:
                good = False
                break
            time.sleep(1)
        shown = json.dumps({k: lay.get(k) for k in ("epoch", "versions", "transitions", "decided")}
                           if isinstance(lay, dict) else lay)
        if n == 1:
            self.epoch1 = lay.get("epoch") if isinstance(lay, dict) else None
            self.check(good, f"after phase 1: layout decided, epoch {self.epoch1} >= 1 "
                       f"({time.monotonic() - t:.0f}s after the last restart's check)",
                       f"after {LAYOUT_WAIT}s: layout {shown[:600]}")
        else:
            self.check(good, f"after phase 2: layout epoch {lay.get('epoch') if isinstance(lay, dict) else '?'}"
                       f" (after phase 1: {self.epoch1}), one version of the 5 storage nodes, "
                       f"no transition", f"after {LAYOUT_WAIT}s: layout {shown[:600]}")
        log(f"layout after phase {n}: {shown[:400]}")
        self.check_model(f"after phase {n}")

    def check_model(self, label):
        """The preloaded objects, the conditional create and the versioned
        bucket read back identical (through both gateways)."""
        clients = [self.s3(0), self.s3(1)]
        bad = []

        def read(item):
            i, key = item
            e = self.preload_model[key]
            try:
                data = clients[i % 2].get_object(Bucket=BUCKET, Key=key)["Body"].read()
                if sha(data) != e["sha"]:
                    return f"{key}: {len(data)} bytes, expected {e['size']}"
            except Exception as ex:  # noqa: BLE001
                return f"{key}: {describe(ex)}"
            return None

        with ThreadPoolExecutor(4) as pool:
            for r in pool.map(read, enumerate(sorted(self.preload_model))):
                if r:
                    bad.append(r)
        self.check(not bad, f"{label}: the {len(self.preload_model)} preloaded objects (conditional "
                   f"create included) read back identical", f"{len(bad)} differ: {bad[:8]}")
        self.check_versions(label, clients)

    def check_versions(self, label, clients):
        v = self.versions
        if v is None:
            return
        bad = []
        for i, (key, vid, digest) in enumerate(v["versions"]):
            try:
                data = clients[i % 2].get_object(Bucket=VBUCKET, Key=key, VersionId=vid)["Body"].read()
                if sha(data) != digest:
                    bad.append(f"{key}@{vid}: other bytes")
            except Exception as e:  # noqa: BLE001
                bad.append(f"{key}@{vid}: {describe(e)}")
        for key, digest in v["current"].items():
            try:
                if sha(clients[1].get_object(Bucket=VBUCKET, Key=key)["Body"].read()) != digest:
                    bad.append(f"{key}: current version has other bytes")
            except Exception as e:  # noqa: BLE001
                bad.append(f"{key}: {describe(e)}")
        for key in v["gone"]:
            try:
                clients[0].get_object(Bucket=VBUCKET, Key=key)
                bad.append(f"{key}: 200 under its delete marker")
            except ClientError as e:
                if status_of(e) != "404":
                    bad.append(f"{key}: {describe(e)} (expected 404)")
            except Exception as e:  # noqa: BLE001
                bad.append(f"{key}: {describe(e)}")
        try:
            r = clients[1].list_object_versions(Bucket=VBUCKET)
            got_v = sorted((x["Key"], x["VersionId"]) for x in r.get("Versions", []))
            got_m = sorted((x["Key"], x["VersionId"]) for x in r.get("DeleteMarkers", []))
            if got_v != sorted((k, vid) for k, vid, _ in v["versions"]):
                bad.append(f"ListObjectVersions versions {got_v}")
            if got_m != sorted(v["markers"]):
                bad.append(f"ListObjectVersions delete markers {got_m}")
        except Exception as e:  # noqa: BLE001
            bad.append(f"ListObjectVersions: {describe(e)}")
        self.check(not bad, f"{label}: the versioned bucket reads back ({len(v['versions'])} versions "
                   f"by id, current versions, the delete marker, ListObjectVersions)",
                   f"{bad[:6]}")

    # -- the impostor

    def dropped(self):
        """{member: dropped gossip datagrams (all reasons), unauthenticated ones}
        from each storage process's /metrics and gateway 1's."""
        c = self.cluster
        out = {}
        for name, s in sorted(c.storage.items()):
            st, text = http_get(f"http://{s['metrics']}/metrics")
            if st == 200:
                m = parse_metrics(text)
                out[name] = (metric_sum(m, "flexdrive_gossip_datagrams_dropped_total"),
                             metric_sum(m, "flexdrive_gossip_datagrams_dropped_total",
                                        reason="unauthenticated"))
        st, text = http_get(f"{c.admin_url}/metrics")
        if st == 200:
            m = parse_metrics(text)
            out["gateway-1"] = (metric_sum(m, "flexdrive_gossip_datagrams_dropped_total"),
                                metric_sum(m, "flexdrive_gossip_datagrams_dropped_total",
                                           reason="unauthenticated"))
        return out

    def impostor(self):
        c = self.cluster
        a = self.args
        d0, t0 = self.dropped(), time.monotonic()
        self.sleep(3)
        d1, t1 = self.dropped(), time.monotonic()
        base_rise = {k: d1[k][0] - d0[k][0] for k in d1 if k in d0}
        name = "impostor"
        ddir = os.path.join(c.dir, name)
        os.makedirs(ddir)
        http, gossip, metrics = (f"127.0.0.1:{c.base + 90}", f"127.0.0.1:{c.base + 91}",
                                 f"127.0.0.1:{c.base + 92}")
        args = ["storage", "--data-dir", ddir, "--http-addr", http, "--gossip-addr", gossip,
                "--seeds", c.seed, "--zone", "zone-1", "--admin-addr", metrics]
        p = c.spawn(name, c.old_bin, args)
        c.impostor = {"pid": p.pid, "id": None, "http": http, "gossip": gossip}
        log(f"impostor: previous release's storage node, pid {p.pid}, gossip {gossip}, seeds {c.seed}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and p.poll() is None and not c.impostor["id"]:
            try:
                with open(os.path.join(c.dir, "logs", f"{name}.log"), errors="replace") as f:
                    m = re.search(r"storage node ([0-9a-f]+) serving on", f.read())
                    if m:
                        c.impostor["id"] = m.group(1)
            except OSError:
                pass
            time.sleep(0.2)
        imp_id = c.impostor["id"]
        if not self.check(imp_id is not None and p.poll() is None,
                          f"impostor started (id {imp_id})", f"log: {c.log_tail(name)}"):
            c.stop_process(name, p.pid)
            return

        def shows(text):
            return imp_id in text or gossip in text or http in text

        t = time.monotonic()
        looks, seen = 0, []
        while time.monotonic() - t < a.impostor_seconds:
            rc, out, err = c.admin("node", "list")
            rc2, out2, err2 = c.admin("status")
            if rc == 0 and rc2 == 0:
                looks += 1
                if shows(out):
                    seen.append(f"node list at {time.monotonic() - t:.1f}s")
                try:
                    st = json.loads(out2)
                    if shows(json.dumps(st.get("members", []))):
                        seen.append(f"status members at {time.monotonic() - t:.1f}s")
                    if shows(json.dumps(st.get("layout", {}))):
                        seen.append(f"layout at {time.monotonic() - t:.1f}s")
                except ValueError:
                    pass
            if p.poll() is not None:
                break
            time.sleep(1)
        running = p.poll() is None
        d2, t2 = self.dropped(), time.monotonic()
        st, text = http_get(f"http://{metrics}/metrics")
        its_view = None
        if st == 200:
            mm = parse_metrics(text)
            its_view = int(metric_sum(mm, "flexdrive_members", state="alive"))
        gone, how = c.stop_process(name, p.pid)
        self.check(running and looks >= a.impostor_seconds / 3,
                   f"impostor ran for {a.impostor_seconds:.0f}s ({looks} looks at node list and status)",
                   f"running at the end: {running} (exit {p.returncode}); looks {looks}; "
                   f"log: {c.log_tail(name)}")
        self.check(not seen, "impostor never in node list, status members or the layout",
                   f"seen in: {seen[:6]}")
        rise = {k: d2[k][0] - d1[k][0] for k in d2 if k in d1}
        rise_unauth = {k: d2[k][1] - d1[k][1] for k in d2 if k in d1}
        storage_rise = sum(v for k, v in rise.items() if k.startswith("storage-"))
        storage_base = sum(v for k, v in base_rise.items() if k.startswith("storage-"))
        log(f"gossip datagrams dropped, before the impostor (3 s): {base_rise}; while it ran: {rise} "
            f"(unauthenticated: {rise_unauth}); members alive in the impostor's own view: {its_view}")
        read_from = [k for k in d2 if k.startswith("storage-") and k in d1]
        rate, rate_before = storage_rise / (t2 - t1), storage_base / (t1 - t0)
        self.check(len(read_from) == STORAGE and storage_rise > 0 and rate > rate_before,
                   f"storage nodes' flexdrive_gossip_datagrams_dropped_total rose by "
                   f"{storage_rise:.0f} in {t2 - t1:.0f}s while the impostor ran "
                   f"({storage_base:.0f} in the {t1 - t0:.0f}s before it)",
                   f"metrics read from {sorted(read_from)}; rise {rise}; before {base_rise}")
        self.check(gone, f"impostor stopped ({how})", how)

    # -- the end

    def stop_load(self):
        if self.load is None:
            return
        left = self.load.finish()
        self.check(not left, f"load stopped ({self.load.ops} requests)", f"threads still running: {left}")

    def final_checks(self):
        L = self.load
        if L is None:
            return
        self.check(not L.errors, "load threads ran without a test error", f"{L.errors[:2]}")
        both = sum(L.both_count.values())
        self.check(both == 0, "no request failed on both gateways (S3 served throughout)",
                   f"{both}: {L.both[:8]}")
        vio = Counter()
        for (_, kind), v in L.violations.items():
            vio[kind] += v
        bad_reads = vio["404 on an acknowledged key"] + vio["wrong bytes"] + vio["deleted key answered 200"]
        self.check(bad_reads == 0, "no GET of an acknowledged key answered 404 or other bytes "
                   "(nor a deleted key 200) during the upgrade",
                   f"{dict(vio)}: {[d for d in L.details if 'listing' not in d][:8]}")
        self.check(vio["create of a new key refused (412)"] == 0,
                   "every conditional create (If-None-Match: *) of a new key succeeded or failed over",
                   f"{vio['create of a new key refused (412)']}: {[d for d in L.details if '412' in d][:8]}")
        self.check(vio["listing disagrees"] == 0, "every load listing agreed with the load's model",
                   f"{vio['listing disagrees']}: {[d for d in L.details if 'listing' in d][:8]}")
        unexpected = sum(L.unexpected.values())
        self.check(unexpected == 0, "no unexpected 4xx answer", f"{dict(L.unexpected)}")

        s3s = [self.s3(0), self.s3(1)]
        # Races: exactly one winner per key.
        rounds = dict(L.races)
        problems = []
        race_model = {}
        for rnd in sorted(rounds):
            entries = rounds[rnd]
            key = f"race/r{rnd:04d}"
            try:
                stored = s3s[rnd % 2].get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except ClientError as e:
                stored = None if status_of(e) == "404" else f"error {describe(e)}"
            except Exception as e:  # noqa: BLE001
                stored = f"error {describe(e)}"
            if isinstance(stored, str):
                problems.append(f"{key}: cannot read it ({stored})")
                continue
            if len(entries) != 2:
                problems.append(f"{key}: {len(entries)} racers reported (round cut short)")
                continue
            winners = [k for k, e in entries.items() if e["won"]]
            holder = next((k for k, e in entries.items() if stored is not None and e["body"] == stored), None)
            outs = {k: e["outcome"] for k, e in entries.items()}
            # Which phase and gateways: a broken round names its transition.
            first = min(entries.values(), key=lambda e: e["fired"])
            label = (f"{key} ({first['phase']}, t={first['fired']:.1f}s, racers via gateways "
                   f"{sorted(e['gw'] + 1 for e in entries.values())})")
            if stored is not None:
                race_model[key] = {"live": True, "sha": sha(stored), "size": len(stored), "unc": False}
            if len(winners) > 1:
                problems.append(f"{label}: two winners {outs}")
            elif len(winners) == 1:
                if holder != winners[0]:
                    problems.append(f"{label}: winner racer {winners[0]} but stored "
                                    f"{'nothing' if stored is None else 'racer ' + str(holder)}'s body; {outs}")
            else:
                if stored is None:
                    if not any(e["ambiguous"] for e in entries.values()):
                        problems.append(f"{label}: no winner and nothing stored: {outs}")
                elif holder is None:
                    problems.append(f"{label}: stored body of neither racer: {outs}")
                elif not entries[holder]["ambiguous"]:
                    problems.append(f"{label}: no 200, stored racer {holder}'s body, whose answer was {outs[holder]}")
        self.check(rounds and not problems, f"conditional-create races: exactly one winner in each of "
                   f"{len(rounds)} rounds", f"{len(problems)} rounds: {problems[:6]}" if rounds else
                   "no race round ran")

        # Every acknowledged write reads back; deleted keys answer 404.
        model = dict(self.preload_model)
        uncertain = []
        for m in L.models:
            for key, e in m.items():
                if e.get("unc"):
                    uncertain.append(key)
                else:
                    model[key] = e
        model.update(race_model)
        bad = []

        def verify(item):
            i, (key, e) = item
            try:
                data = s3s[i % 2].get_object(Bucket=BUCKET, Key=key)["Body"].read()
                if not e["live"]:
                    return f"{key}: deleted, answered 200 ({len(data)} bytes)"
                if sha(data) != e["sha"]:
                    return f"{key}: {len(data)} bytes, expected {e['size']}"
            except ClientError as ex:
                if not (e["live"] is False and status_of(ex) == "404"):
                    return f"{key}: {describe(ex)}"
            except Exception as ex:  # noqa: BLE001
                return f"{key}: {describe(ex)}"
            return None

        with ThreadPoolExecutor(4) as pool:
            for r in pool.map(verify, enumerate(sorted(model.items()))):
                if r:
                    bad.append(r)
        live = {k: e for k, e in model.items() if e["live"]}
        self.check(not bad, f"every acknowledged write reads back identical, every acknowledged "
                   f"delete answers 404 ({len(live)} live, {len(model) - len(live)} deleted keys; "
                   f"{len(uncertain)} uncertain)", f"{len(bad)}: {bad[:8]}")

        # The listing equals the model.
        listed, err = {}, None
        try:
            token = None
            for _ in range(100):
                kw = {"Bucket": BUCKET, "MaxKeys": 1000}
                if token:
                    kw["ContinuationToken"] = token
                r = s3s[1].list_objects_v2(**kw)
                listed.update({o["Key"]: o["Size"] for o in r.get("Contents", [])})
                token = r.get("NextContinuationToken")
                if not r.get("IsTruncated"):
                    break
        except Exception as e:  # noqa: BLE001
            err = describe(e)
        unc = set(uncertain)
        missing = [k for k in live if listed.get(k) != live[k]["size"]]
        extra = [k for k in listed if k not in live and k not in unc]
        self.check(err is None and not missing and not extra,
                   f"the bucket listing equals the model ({len(listed)} keys)",
                   f"error {err}; missing or wrong size: {missing[:8]}; not in the model: {extra[:8]}")
        self.check_versions("at the end", s3s)
        if uncertain:
            self.final_notes.append(f"uncertain keys at the end (their last write or delete failed on both "
                                    f"gateways, or was refused after a failover): {len(uncertain)}: "
                                    f"{uncertain[:10]}")
        # A create that failed on one gateway and was then refused (412) on
        # the other: what the key held right after (read at once).
        if L.refused_after_failover:
            self.final_notes.append(f"creates (If-None-Match: *) of new keys that failed on one gateway "
                                    f"and were refused with 412 on the other: {len(L.refused_after_failover)}")
            for key, phase, cause, held in L.refused_after_failover[:10]:
                self.final_notes.append(f"  {phase}: {key}: first try {cause}; the key then held {held}")

    def layout_history(self):
        """The epochs the storage nodes decided (their `layout: epoch decided`
        log lines): none may call a majority of its acceptors unavailable,
        since a majority of them has just accepted it (with most of them
        unavailable, partitions are left without a primary, and conditional
        writes fail)."""
        logs = os.path.join(self.cluster.dir, "logs")
        pat = re.compile(r"^(\S+) .*layout: epoch decided epoch=(\d+) versions=\[(.*?)\] "
                         r"readable=(\d+) unavailable=\{(.*?)\}")
        decided = []
        for name in sorted(os.listdir(logs)):
            if not name.startswith("storage-"):
                continue
            with open(os.path.join(logs, name), errors="replace") as f:
                for line in f:
                    m = pat.match(line)
                    if m:
                        sizes = [int(n) for _, n in re.findall(r"\((\d+), (\d+)\)", m.group(3))]
                        unavailable = re.findall(r'"([0-9a-f]+)"', m.group(5))
                        decided.append((m.group(1), int(m.group(2)), name[:-4], max(sizes or [0]),
                                        unavailable))
        decided.sort()
        self.decided = decided
        bad = [d for d in decided if d[3] and len(d[4]) >= d[3] // 2 + 1]
        self.check(decided and not bad,
                   f"no decided layout epoch calls a majority of its members unavailable "
                   f"({len(decided)} epochs decided, from the storage logs)",
                   "no 'epoch decided' line in the storage logs" if not decided else
                   "; ".join(f"epoch {e} decided by {who} at {t}: {len(u)} of {n} members "
                             f"unavailable {sorted(u)}" for t, e, who, n, u in bad[:4]))

    # -- summary

    def summary(self):
        print("\n== Summary ==", flush=True)
        L = self.load
        if L is not None:
            phases = [p for p in PHASES if any(k[0] == p for k in L.counts)]
            print("Load requests by phase and outcome:")
            for ph in phases:
                by = Counter()
                for (p, op, out), v in L.counts.items():
                    if p == ph:
                        by[out] += v
                total = sum(by.values())
                parts = ", ".join(f"{o}: {v}" for o, v in sorted(by.items(), key=lambda kv: -kv[1]))
                print(f"  {ph:<18} {total:>6}  {parts}")
            print("Load requests by operation and outcome (whole run):")
            ops = Counter()
            for (p, op, out), v in L.counts.items():
                ops[(op, out)] += v
            for op in ("create", "put", "get", "delete", "list", "race-put"):
                row = {o: v for (o2, o), v in ops.items() if o2 == op}
                if row:
                    print(f"  {op:<9} " + ", ".join(f"{o}: {v}" for o, v in
                                                    sorted(row.items(), key=lambda kv: -kv[1])))
            if L.failover_causes:
                print("Failovers (first try failed, the other gateway was tried), by phase and cause:")
                for (p, cause), v in sorted(L.failover_causes.items(),
                                            key=lambda kv: (PHASES.index(kv[0][0]), kv[0][1])):
                    print(f"  {p:<18} {cause:<45} {v}")
            else:
                print("Failovers: 0")
            print(f"Requests that failed on both gateways: {sum(L.both_count.values())}"
                  + (f" ({dict(L.both_count)})" if L.both_count else ""))
            for d in L.both[:10]:
                print(f"  {d}")
            print("Violations (GET 404 / other bytes on acknowledged keys, deleted key 200, "
                  "listing disagreements):")
            if L.violations:
                for (p, kind), v in sorted(L.violations.items()):
                    print(f"  {p:<18} {kind:<32} {v}")
                for d in L.details[:MAX_DETAILS]:
                    print(f"  {d}")
            else:
                print("  none")
            if L.unexpected:
                print(f"Unexpected 4xx answers: {dict(L.unexpected)}")
            print(f"Race rounds: {len(L.races)}")
        for note in self.final_notes:
            print(note)
        if getattr(self, "decided", None):
            names = {s["id"]: n for n, s in self.cluster.storage.items()}
            print("Layout epochs decided (storage logs):")
            for t, e, who, n, u in self.decided:
                un = ", ".join(names.get(i, i) for i in sorted(u, key=lambda i: names.get(i, i)))
                print(f"  epoch {e:<3} {t}  by {who:<10} {n} members, unavailable: {un or '-'}")
        if self.phase_times:
            print("Time per phase:")
            for name, start, end in self.phase_times:
                end = end if end is not None else time.monotonic()
                print(f"  {name:<18} {end - start:6.1f}s")
        print(f"Total: {time.monotonic() - T0:.1f}s", flush=True)

    def cleanup(self):
        try:
            if self.load is not None and not self.load.stop.is_set():
                self.load.finish()
        except BaseException:  # noqa: BLE001 - cleanup goes on
            traceback.print_exc()
        if self.cluster is not None:
            self.cluster.stop_all()
        # Safety net: anything still running a program from our work dir.
        for pid in processes_under(os.path.join(self.args.work, "")):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", default=os.path.join(REPO, "target", "release", "flexdrive"),
                        help="this release's binary (default target/release/flexdrive)")
    parser.add_argument("--old", default=None,
                        help="the previous release's binary (default: env FLEXDRIVE_OLD_BIN; "
                        "if unset, built from conformance/upgrade/previous-release)")
    parser.add_argument("--threads", type=int, default=3, help="load threads (default 3)")
    parser.add_argument("--op-pause", type=float, default=0.02,
                        help="pause of each load thread between requests (default 0.02 s)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait after a restarted process is back (default 3)")
    parser.add_argument("--steady-seconds", type=float, default=5.0,
                        help="load on the old cluster before phase 1 (default 5)")
    parser.add_argument("--impostor-seconds", type=float, default=15.0,
                        help="how long the impostor runs (default 15)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir even on success")
    args = parser.parse_args()
    if not 1 <= args.threads <= 16:
        parser.error("--threads must be 1..16")
    if not 0 <= args.settle <= 60 or not 0 <= args.steady_seconds <= 120 or not 3 <= args.impostor_seconds <= 120:
        parser.error("--settle 0..60, --steady-seconds 0..120, --impostor-seconds 3..120")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    for tool in ("curl", "git", "tar"):
        if shutil.which(tool) is None:
            print(f"rolling.py: '{tool}' is not on PATH", file=sys.stderr)
            print("0 passed, 1 failed")
            return 1
    probe = make_s3("http://127.0.0.1:1", "x", "y")
    if "IfNoneMatch" not in probe.meta.service_model.operation_model("PutObject").input_shape.members:
        print("rolling.py: this botocore has no IfNoneMatch on PutObject; upgrade boto3", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    args.work = tempfile.mkdtemp(prefix="flexdrive-rolling.")
    log(f"seed {args.seed}, {args.threads} load threads, work dir {args.work}")

    def interrupted(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    run = Run(args)
    try:
        run.run()
    except Aborted:
        pass
    except Interrupted as e:
        run.fail("run", f"interrupted ({e})")
    except Exception:  # noqa: BLE001
        run.fail("run", "test error: " + traceback.format_exc().strip().splitlines()[-1])
        traceback.print_exc()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let cleanup finish
        run.end_phases()
        run.cleanup()
    run.summary()
    left = run.cluster.left_running() if run.cluster else []
    stray = processes_under(os.path.join(args.work, ""))
    run.check(not left and not stray, "every process the test started is stopped",
              f"still running: {left} {stray}")
    if run.failed or args.keep:
        print(f"# work dir kept: {args.work} (cluster data and logs in {args.work}/cluster)", flush=True)
    else:
        shutil.rmtree(args.work, ignore_errors=True)
    print(f"{run.passed} passed, {run.failed} failed", flush=True)
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
