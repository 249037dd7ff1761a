#!/usr/bin/env bash
# Starts the local multi-process cluster (deploy/local-cluster.sh: 5 storage
# nodes and 2 gateways as separate processes on loopback), writes objects
# through one gateway and reads them through the other, then stops it.
# One line per step, `ok - <name>` or `FAIL - <name>: <reason>`, and a final
# `N passed, M failed`; exits 1 if anything failed.
#
# Environment: FLEXDRIVE_BIN (default target/release/flexdrive).
set -u

CMD_TIMEOUT=120
cd "$(dirname "$0")/.." || exit 1

PASSED=0
FAILED=0
ok() { echo "ok - $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL - $1: $2"; FAILED=$((FAILED + 1)); }

for tool in aws python3 timeout cmp; do
    command -v "$tool" >/dev/null 2>&1 || { echo "cluster.sh: '$tool' is not on PATH" >&2; echo "0 passed, 1 failed"; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexdrive-cluster.XXXXXX")
DIR="$WORK/cluster"
cleanup() {
    deploy/local-cluster.sh stop --dir "$DIR" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# A base port whose block (S3, HTTP, gossip of every process) is free.
BASE=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000, 100)
    try:
        socks = []
        for off in range(80):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                s.bind(("127.0.0.1", base + off))
                socks.append(s)
        for s in socks:
            s.close()
        print(base)
        break
    except OSError:
        for s in socks:
            s.close()
PY
)
[ -n "$BASE" ] || { fail "free ports" "no free port block found"; echo "$PASSED passed, $FAILED failed"; exit 1; }

if timeout 180 deploy/local-cluster.sh start --storage 5 --gateways 2 --dir "$DIR" --base-port "$BASE" >"$WORK/start.log" 2>&1; then
    ok "local-cluster.sh starts 5 storage nodes and 2 gateways"
else
    fail "local-cluster.sh start" "$(tail -5 "$WORK/start.log" | tr '\n' ' ')"
    echo "$PASSED passed, $FAILED failed"
    exit 1
fi

running=$(deploy/local-cluster.sh status --dir "$DIR" | tail -1)
if [ "$running" = "7 of 7 running" ]; then ok "7 separate processes running"; else fail "status" "$running"; fi

# shellcheck disable=SC1091
. "$DIR/cluster.env"
export FLEXDRIVE_ADMIN_TOKEN
export AWS_ACCESS_KEY_ID=$FLEXDRIVE_ROOT_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$FLEXDRIVE_ROOT_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_CA_BUNDLE
GW1=http://127.0.0.1:$BASE
GW2=http://127.0.0.1:$((BASE + 1))
aws1() { timeout "$CMD_TIMEOUT" aws --endpoint-url "$GW1" "$@"; }
aws2() { timeout "$CMD_TIMEOUT" aws --endpoint-url "$GW2" "$@"; }

# Gateways are up once their S3 port answers; wait (bounded) until they also
# see all five storage nodes, which the first write needs.
ready=""
for _ in $(seq 1 60); do
    if aws1 s3 mb s3://crossing >/dev/null 2>&1 || aws1 s3api head-bucket --bucket crossing >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.5
done
if [ -n "$ready" ]; then ok "bucket created through gateway 1"; else fail "create bucket" "gateway 1 did not accept it within 30 s"; fi

head -c $((12 * 1024 * 1024 + 7)) /dev/urandom >"$WORK/obj.bin"
if aws1 s3 cp --only-show-errors "$WORK/obj.bin" s3://crossing/obj.bin; then
    ok "12 MiB object written through gateway 1"
else
    fail "write through gateway 1" "aws s3 cp failed"
fi
if aws2 s3 cp --only-show-errors s3://crossing/obj.bin "$WORK/obj.back" && cmp -s "$WORK/obj.bin" "$WORK/obj.back"; then
    ok "same bytes read through gateway 2"
else
    fail "read through gateway 2" "download failed or bytes differ"
fi
listed=$(aws2 s3 ls s3://crossing/ 2>/dev/null | wc -l)
if [ "$listed" = "1" ]; then ok "gateway 2 lists it"; else fail "list through gateway 2" "$listed entries"; fi

# Chunks are on three different storage nodes' disks (13 chunks x 3 copies).
copies=$(find "$DIR"/storage-*/chunks -type f -name '????????????????????????????????' ! -path '*/chunks/tmp/*' 2>/dev/null | wc -l)
if [ "$copies" = "39" ]; then ok "39 chunk files: 13 chunks x 3 copies"; else fail "chunk copies" "$copies chunk files, expected 39"; fi

# The operator's view: every member alive, then one storage process killed
# shows up as down with chunks below three copies (bounded wait).
BIN=${FLEXDRIVE_BIN:-target/release/flexdrive}
admin() { timeout 30 "$BIN" admin --admin-endpoint "http://127.0.0.1:$((BASE + 80))" --json "$@"; }
status_check() { # python expression over the status JSON `s`
    admin status 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"
}
if status_check "len(s['members']) == 7 and all(m['state'] == 'alive' for m in s['members'])"; then
    ok "admin status shows 7 members alive"
else
    fail "admin status" "$(admin status 2>&1 | head -c 300)"
fi
victim_pid=$(cat "$DIR/pids/storage-5.pid" 2>/dev/null)
kill -9 "$victim_pid" 2>/dev/null
seen=""
for _ in $(seq 1 60); do
    if status_check "any(m['role'] == 'storage' and m['state'] == 'down' for m in s['members']) and s['durability']['chunks_below_three_copies'] > 0"; then
        seen=1
        break
    fi
    sleep 0.5
done
if [ -n "$seen" ]; then
    ok "a killed storage node shows as down with chunks below three copies"
else
    fail "killed node in admin status" "$(admin status 2>&1 | head -c 400)"
fi
if aws2 s3 cp --only-show-errors s3://crossing/obj.bin "$WORK/obj.again" && cmp -s "$WORK/obj.bin" "$WORK/obj.again"; then
    ok "still readable with a storage node down"
else
    fail "read with a node down" "download failed or bytes differ"
fi

if aws2 s3 rm --only-show-errors s3://crossing/obj.bin && aws1 s3 rb s3://crossing >/dev/null; then
    ok "deleted through gateway 2, bucket removed through gateway 1"
else
    fail "delete" "rm or rb failed"
fi

if deploy/local-cluster.sh stop --dir "$DIR" >"$WORK/stop.log" 2>&1 && ! pgrep -f -- "$DIR/" >/dev/null; then
    ok "local-cluster.sh stop stops every process"
else
    fail "stop" "$(tail -3 "$WORK/stop.log" | tr '\n' ' ')"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
