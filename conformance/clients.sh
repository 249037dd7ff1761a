#!/usr/bin/env bash
# Drives a real Flexdrive server with the real aws-cli and rclone and checks
# what a user would see. One line per step: `ok - <name>` or
# `FAIL - <name>: <reason>`; the last line is `N passed, M failed`; the exit
# status is 1 if anything failed or the server did not start.
#
#   conformance/clients.sh
#       builds target/release/flexdrive if missing, starts `flexdrive server`
#       on a free loopback port with fresh root credentials, runs the steps,
#       stops the server.
#   FLEXDRIVE_ENDPOINT=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. \
#   conformance/clients.sh
#       runs the steps against an endpoint that is already up (any S3 server).
#
# Environment: FLEXDRIVE_BIN (default target/release/flexdrive),
# CLIENTS_TIMEOUT (seconds per client command, default 300),
# CLIENTS_KEEP_WORK=1 (keep the temporary directory, for debugging).
# Needs: aws (aws-cli v1 or v2), rclone, curl, python3, timeout, cmp, diff.
# This script installs nothing.
# Step functions are called through `step`, which shellcheck 0.9 cannot follow.
# shellcheck disable=SC2317
set -u

# Limits: every client command and every wait has one.
CMD_TIMEOUT=${CLIENTS_TIMEOUT:-300}
START_POLLS=120      # x 0.5 s: wait at most about 60 s for the server to answer
STOP_POLLS=50        # x 0.2 s: wait at most 10 s for the server to exit on TERM
MAX_LIST_PAGES=100   # pagination loop bound
BIG_SIZE=$((100 * 1024 * 1024))
MIB=$((1024 * 1024))

cd "$(dirname "$0")/.." || exit 1

PASSED=0
FAILED=0
REASON=""
SERVER_PID=""

ok() { echo "ok - $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL - $1${2:+: $2}"; FAILED=$((FAILED + 1)); }
finish() {
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -gt 0 ]; then exit 1; fi
    exit 0
}
# Gives up before any step ran: one failure, the summary, exit 1.
abort() {
    fail "$1" "$2"
    finish
}

for tool in aws rclone curl python3 timeout cmp diff; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case $tool in
            aws) hint="install aws-cli (pip install awscli)" ;;
            rclone) hint="install rclone (apt-get install rclone)" ;;
            *) hint="install $tool" ;;
        esac
        echo "clients.sh: '$tool' is not on PATH: $hint" >&2
        abort "tools present" "'$tool' missing: $hint"
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexdrive-clients.XXXXXX") || abort "setup" "mktemp failed"

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq "$STOP_POLLS"); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [ "${CLIENTS_KEEP_WORK:-0}" = 1 ]; then
        echo "# kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_token() { # $1 = length; lowercase letters and digits
    python3 -c "import secrets, string; a = string.ascii_lowercase + string.digits; print(''.join(secrets.choice(a) for _ in range($1)))"
}

# ---------------------------------------------------------------- server ---

if [ -n "${FLEXDRIVE_ENDPOINT:-}" ]; then
    ENDPOINT=${FLEXDRIVE_ENDPOINT%/}
    if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
        abort "credentials" "FLEXDRIVE_ENDPOINT is set: also set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    fi
    echo "# using running endpoint $ENDPOINT"
else
    BIN=${FLEXDRIVE_BIN:-target/release/flexdrive}
    if [ ! -x "$BIN" ]; then
        if [ -n "${FLEXDRIVE_BIN:-}" ]; then
            abort "server binary" "FLEXDRIVE_BIN=$BIN is not an executable file"
        fi
        echo "# $BIN missing: cargo build --release --bin flexdrive" >&2
        cargo build --release --bin flexdrive >&2 || abort "server binary" "cargo build --release --bin flexdrive failed"
    fi
    PORT=$(free_port) || abort "server start" "no free port"
    AWS_ACCESS_KEY_ID="fdclients$(random_token 11)"
    AWS_SECRET_ACCESS_KEY=$(random_token 40)
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    mkdir -p "$WORK/data"
    FLEXDRIVE_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID FLEXDRIVE_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
        "$BIN" server --data-dir "$WORK/data" --s3-addr "127.0.0.1:$PORT" --admin-addr 127.0.0.1:0 \
        >"$WORK/server.log" 2>&1 </dev/null &
    SERVER_PID=$!
    ENDPOINT="http://127.0.0.1:$PORT"
    up=0
    exited=0
    for _ in $(seq "$START_POLLS"); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            exited=1
            break
        fi
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$ENDPOINT/")
        # It listens a moment before its gateway knows the layout (503s
        # until then); it says when it is running.
        case $code in
            [1-5][0-9][0-9])
                if grep -q 'Flexdrive is running' "$WORK/server.log"; then
                    up=1
                    break
                fi
                ;;
        esac
        sleep 0.5
    done
    if [ "$up" != 1 ]; then
        echo "# server did not answer on $ENDPOINT; last lines of its log:" >&2
        tail -n 40 "$WORK/server.log" >&2
        if [ "$exited" = 1 ]; then
            wait "$SERVER_PID"
            abort "server start" "$BIN server exited with status $? before answering (log above)"
        fi
        abort "server start" "no HTTP answer from $ENDPOINT within about $((START_POLLS / 2)) s"
    fi
    echo "# started $BIN server on $ENDPOINT (pid $SERVER_PID, data $WORK/data)"
fi

# aws-cli: keys from the environment, region us-east-1, path-style requests,
# and nothing from the user's own ~/.aws.
cat >"$WORK/aws-config" <<'EOF'
[default]
region = us-east-1
s3 =
    addressing_style = path
EOF
export AWS_CONFIG_FILE="$WORK/aws-config"
export AWS_SHARED_CREDENTIALS_FILE="$WORK/no-credentials"
export AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE

# rclone: remote "fd" from environment variables only.
export RCLONE_CONFIG="$WORK/rclone.conf"
: >"$RCLONE_CONFIG"
export RCLONE_CONFIG_FD_TYPE=s3
export RCLONE_CONFIG_FD_PROVIDER=Other
export RCLONE_CONFIG_FD_ENDPOINT="$ENDPOINT"
export RCLONE_CONFIG_FD_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
export RCLONE_CONFIG_FD_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
export RCLONE_CONFIG_FD_REGION=us-east-1
export RCLONE_CONFIG_FD_FORCE_PATH_STYLE=true

awsc() { timeout "$CMD_TIMEOUT" aws --endpoint-url "$ENDPOINT" "$@"; }
# rclone fails on the CA bundle variable (see shared/CRATES.md); one retry
# only, so that server errors surface instead of being retried away.
rcl() { timeout "$CMD_TIMEOUT" env -u AWS_CA_BUNDLE rclone --retries 1 --low-level-retries 1 "$@"; }

# step NAME FUNCTION [ARGS]: runs FUNCTION with its output in a log of its
# own; a failure's reason is $REASON plus the last error line of that log.
STEP_NO=0
mkdir -p "$WORK/logs"
step() {
    local name=$1 log hint
    shift
    STEP_NO=$((STEP_NO + 1))
    log=$(printf '%s/logs/%02d.log' "$WORK" "$STEP_NO")
    REASON=""
    if "$@" >"$log" 2>&1; then
        ok "$name"
    else
        hint=$(grep -aiE 'error|fail|differ|denied|assert' "$log" | tail -n 1 | tr -s ' \t' ' ' | cut -c 1-200)
        [ -n "$REASON" ] || REASON=$(tail -n 2 "$log" | tr '\n' ' ' | cut -c 1-200)
        if [ -n "$hint" ] && [ "$hint" != "$REASON" ]; then
            REASON="$REASON -- $hint"
        fi
        fail "$name" "$REASON"
    fi
}
why() { REASON=$1; return 1; }

SUFFIX=$(random_token 8)
B="fd-clients-$SUFFIX"          # aws-cli bucket
RB="rcl-$SUFFIX"                 # rclone bucket

# ------------------------------------------------------------------ data ---

head -c "$BIG_SIZE" /dev/urandom >"$WORK/big.bin" || abort "setup" "cannot write test data in $WORK"
printf 'hello flexdrive\n' >"$WORK/small.txt"

make_tree() { # nested directory for aws s3 sync
    local d=$WORK/tree
    mkdir -p "$d/a/b/c" "$d/dir with space" "$d/x"
    head -c 1000 /dev/urandom >"$d/top.bin"
    printf 'one\n' >"$d/a/one.txt"
    head -c 70000 /dev/urandom >"$d/a/b/two.bin"
    head -c 3 /dev/urandom >"$d/a/b/c/three.bin"
    : >"$d/a/b/c/empty"
    printf 'space\n' >"$d/dir with space/file with space.txt"
    printf 'plus\n' >"$d/x/plus+sign.txt"
    printf 'unicode\n' >"$d/x/caf\xc3\xa9.txt"
    head -c 12345 /dev/urandom >"$d/x/y.bin"
}
make_tree

make_rclone_tree() { # 200 small files (0..64 KiB) and 3 large ones
    python3 - "$WORK/rtree" <<'EOF'
import os, random, sys
root = sys.argv[1]
rnd = random.Random()
dirs = ["", "sub", "sub/deeper", "with space", "ünïcödé", "日本語/フォルダ"]
names = ["file", "file with space", "naïve café", "データ", "plus+sign", "tilde~", "percent%20"]
for i in range(200):
    d = os.path.join(root, dirs[i % len(dirs)])
    os.makedirs(d, exist_ok=True)
    name = f"{names[i % len(names)]} {i:03}.bin"
    with open(os.path.join(d, name), "wb") as f:
        f.write(os.urandom(rnd.randint(0, 64 * 1024)))
os.makedirs(os.path.join(root, "large"), exist_ok=True)
for name, size in [("twenty.bin", 20 << 20), ("thirty three.bin", 33 << 20), ("one byte.bin", 1)]:
    with open(os.path.join(root, "large", name), "wb") as f:
        f.write(os.urandom(size))
EOF
}
make_rclone_tree || abort "setup" "cannot write the rclone test tree"

# --------------------------------------------------------------- aws-cli ---

t_mb() {
    awsc s3 mb "s3://$B"
}

t_ls_buckets() {
    local out
    out=$(awsc s3 ls) || why "aws s3 ls failed" || return 1
    echo "$out"
    echo "$out" | awk '{print $3}' | grep -qx "$B" || why "bucket $B not in 'aws s3 ls'"
}

t_cp_big_up() {
    awsc s3 cp --only-show-errors "$WORK/big.bin" "s3://$B/big.bin" || why "upload failed" || return 1
    local len etag
    len=$(awsc s3api head-object --bucket "$B" --key big.bin --query ContentLength --output text) ||
        why "head-object failed" || return 1
    [ "$len" = "$BIG_SIZE" ] || why "ContentLength $len, expected $BIG_SIZE" || return 1
    etag=$(awsc s3api head-object --bucket "$B" --key big.bin --query ETag --output text) || return 1
    # aws-cli uploads files above 8 MiB in 8 MiB parts: a multipart ETag "<md5>-13".
    case $etag in
        *-13\"|*-13) ;;
        *) why "ETag $etag is not a 13-part multipart ETag" || return 1 ;;
    esac
}

t_cp_big_down() {
    awsc s3 cp --only-show-errors "s3://$B/big.bin" "$WORK/big.back" || why "download failed" || return 1
    cmp "$WORK/big.bin" "$WORK/big.back" || why "downloaded bytes differ"
}

t_cp_metadata() {
    awsc s3 cp --only-show-errors --content-type "text/x-flexdrive" \
        --metadata "color=blue,shape=round" "$WORK/small.txt" "s3://$B/meta/small.txt" ||
        why "upload failed" || return 1
    local out
    out=$(awsc s3api head-object --bucket "$B" --key meta/small.txt --output json) || why "head-object failed" || return 1
    echo "$out"
    python3 - "$out" <<'EOF' || why "head-object: $(echo "$out" | tr -d '\n ' | cut -c 1-200)"
import json, sys
h = json.loads(sys.argv[1])
assert h.get("ContentType") == "text/x-flexdrive", h.get("ContentType")
assert h.get("Metadata") == {"color": "blue", "shape": "round"}, h.get("Metadata")
assert h.get("ContentLength") == 16, h.get("ContentLength")
EOF
}

t_sync_up_down() {
    awsc s3 sync --only-show-errors "$WORK/tree" "s3://$B/tree/" || why "sync up failed" || return 1
    awsc s3 sync --only-show-errors "s3://$B/tree/" "$WORK/tree.back" || why "sync down failed" || return 1
    # aws s3 sync does not create empty directories; every tree dir has files.
    diff -r "$WORK/tree" "$WORK/tree.back" || why "synced tree differs"
}

t_ls_recursive() {
    local want got
    want=$(find "$WORK/tree" -type f | wc -l)
    got=$(awsc s3 ls --recursive "s3://$B/tree/" | wc -l)
    [ "$got" -eq "$want" ] || why "aws s3 ls --recursive shows $got objects, expected $want"
}

t_list_pagination() {
    # --page-size 2 makes aws-cli call ListObjectsV2 with MaxKeys=2 and follow
    # continuation tokens; --max-items 3 cuts its output and hands back a
    # NextToken for --starting-token.
    python3 - "$WORK/tree" "$ENDPOINT" "$B" "$CMD_TIMEOUT" "$MAX_LIST_PAGES" <<'EOF' ||
import json, os, subprocess, sys
root, endpoint, bucket, timeout, max_pages = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
want = sorted("tree/" + os.path.relpath(os.path.join(d, f), root)
              for d, _, fs in os.walk(root) for f in fs)
got, token, pages = [], None, 0
while True:
    pages += 1
    assert pages <= max_pages, "pagination did not end"
    cmd = ["timeout", timeout, "aws", "--endpoint-url", endpoint, "s3api", "list-objects-v2",
           "--bucket", bucket, "--prefix", "tree/", "--page-size", "2", "--max-items", "3",
           "--output", "json"]
    if token:
        cmd += ["--starting-token", token]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    page = json.loads(out) if out.strip() else {}
    keys = [o["Key"] for o in page.get("Contents", [])]
    assert len(keys) <= 3, f"--max-items 3 returned {len(keys)} keys"
    got += keys
    token = page.get("NextToken")
    if not token:
        break
assert got == want, f"listed {got}, expected {want}"
assert pages >= 3, f"only {pages} pages for {len(want)} keys"
print(f"{len(got)} keys in {pages} pages")
EOF
        why "pagination check failed"
}

t_range() {
    # 20 bytes across the 1 MiB boundary (a chunk boundary for Flexdrive).
    local first=$((MIB - 10)) last=$((MIB + 9)) out
    out=$(awsc s3api get-object --bucket "$B" --key big.bin --range "bytes=$first-$last" \
        --query ContentRange --output text "$WORK/range.out") || why "get-object --range failed" || return 1
    [ "$out" = "bytes $first-$last/$BIG_SIZE" ] || why "ContentRange '$out'" || return 1
    tail -c +$((first + 1)) "$WORK/big.bin" | head -c 20 >"$WORK/range.want"
    cmp "$WORK/range.want" "$WORK/range.out" || why "range bytes differ" || return 1
    # Suffix range: the last 5 bytes.
    awsc s3api get-object --bucket "$B" --key big.bin --range "bytes=-5" "$WORK/suffix.out" >/dev/null ||
        why "get-object --range bytes=-5 failed" || return 1
    tail -c 5 "$WORK/big.bin" | cmp - "$WORK/suffix.out" || why "suffix range bytes differ"
}

t_presign() {
    # aws-cli v1 presigns with SigV2 query parameters by default; with
    # signature_version = s3v4 (aws-cli v2's and the SDKs' default) with SigV4.
    local url code version
    sed 's/^s3 =$/s3 =\n    signature_version = s3v4/' "$AWS_CONFIG_FILE" >"$WORK/aws-config-v4"
    for version in default v4; do
        if [ "$version" = v4 ]; then
            url=$(AWS_CONFIG_FILE="$WORK/aws-config-v4" awsc s3 presign "s3://$B/meta/small.txt" --expires-in 300) ||
                why "aws s3 presign (SigV4) failed" || return 1
            case $url in
                *X-Amz-Signature=*) ;;
                *) why "signature_version = s3v4 gave no SigV4 URL: $url" || return 1 ;;
            esac
        else
            url=$(awsc s3 presign "s3://$B/meta/small.txt" --expires-in 300) || why "aws s3 presign failed" || return 1
        fi
        echo "$url"
        rm -f "$WORK/presigned.out"
        code=$(curl -s -m 60 -o "$WORK/presigned.out" -w '%{http_code}' "$url")
        [ "$code" = 200 ] || why "curl of the presigned URL ($version): HTTP $code" || return 1
        cmp "$WORK/small.txt" "$WORK/presigned.out" || why "presigned bytes differ ($version)" || return 1
    done
}

t_head_missing() {
    local out
    if out=$(awsc s3api head-object --bucket "$B" --key "no/such/key" 2>&1); then
        why "head-object of a missing key succeeded"
        return 1
    fi
    echo "$out"
    case $out in
        *"(404)"*) ;;
        *) why "expected a 404, got: $(echo "$out" | tr '\n' ' ' | cut -c 1-200)" || return 1 ;;
    esac
}

t_multipart_explicit() {
    local key=mp/explicit.bin upload e1 e2 parts etag
    head -c $((5 * MIB)) "$WORK/big.bin" >"$WORK/part1"
    tail -c $((3 * MIB + 123)) "$WORK/big.bin" >"$WORK/part2"
    cat "$WORK/part1" "$WORK/part2" >"$WORK/mp.want"
    upload=$(awsc s3api create-multipart-upload --bucket "$B" --key "$key" --query UploadId --output text) ||
        why "create-multipart-upload failed" || return 1
    [ -n "$upload" ] && [ "$upload" != None ] || why "no UploadId" || return 1
    e1=$(awsc s3api upload-part --bucket "$B" --key "$key" --upload-id "$upload" --part-number 1 \
        --body "$WORK/part1" --query ETag --output text) || why "upload-part 1 failed" || return 1
    e2=$(awsc s3api upload-part --bucket "$B" --key "$key" --upload-id "$upload" --part-number 2 \
        --body "$WORK/part2" --query ETag --output text) || why "upload-part 2 failed" || return 1
    parts=$(awsc s3api list-parts --bucket "$B" --key "$key" --upload-id "$upload" \
        --query 'Parts[].[PartNumber,Size]' --output text) || why "list-parts failed" || return 1
    parts=$(echo "$parts" | tr -s ' \t' ' ' | tr '\n' ';')
    [ "$parts" = "1 $((5 * MIB));2 $((3 * MIB + 123));" ] || why "list-parts gave '$parts'" || return 1
    python3 -c 'import json, sys; print(json.dumps({"Parts": [{"ETag": sys.argv[1], "PartNumber": 1}, {"ETag": sys.argv[2], "PartNumber": 2}]}))' \
        "$e1" "$e2" >"$WORK/parts.json"
    awsc s3api complete-multipart-upload --bucket "$B" --key "$key" --upload-id "$upload" \
        --multipart-upload "file://$WORK/parts.json" || why "complete-multipart-upload failed" || return 1
    awsc s3api get-object --bucket "$B" --key "$key" "$WORK/mp.got" >/dev/null || why "get-object failed" || return 1
    cmp "$WORK/mp.want" "$WORK/mp.got" || why "completed object differs from part1+part2" || return 1
    etag=$(awsc s3api head-object --bucket "$B" --key "$key" --query ETag --output text) || return 1
    case $etag in
        *-2\"|*-2) ;;
        *) why "ETag $etag is not a 2-part multipart ETag" || return 1 ;;
    esac
}

t_multipart_abort() {
    local key=mp/aborted.bin upload listed
    upload=$(awsc s3api create-multipart-upload --bucket "$B" --key "$key" --query UploadId --output text) ||
        why "create-multipart-upload failed" || return 1
    awsc s3api upload-part --bucket "$B" --key "$key" --upload-id "$upload" --part-number 1 \
        --body "$WORK/small.txt" >/dev/null || why "upload-part failed" || return 1
    listed=$(awsc s3api list-multipart-uploads --bucket "$B" --query 'Uploads[].UploadId' --output text) ||
        why "list-multipart-uploads failed" || return 1
    echo "$listed" | tr '\t' '\n' | grep -qxF "$upload" || why "upload not in list-multipart-uploads" || return 1
    awsc s3api abort-multipart-upload --bucket "$B" --key "$key" --upload-id "$upload" ||
        why "abort-multipart-upload failed" || return 1
    listed=$(awsc s3api list-multipart-uploads --bucket "$B" --query 'Uploads[].UploadId' --output text) ||
        why "list-multipart-uploads failed" || return 1
    if echo "$listed" | tr '\t' '\n' | grep -qxF "$upload"; then
        why "aborted upload still listed"
        return 1
    fi
    if awsc s3api head-object --bucket "$B" --key "$key" >/dev/null 2>&1; then
        why "aborted upload left an object"
        return 1
    fi
}

t_versioning() {
    # A bucket of its own: the later `aws s3 rm` + `rb` of $B would only add
    # delete markers to a versioned bucket.
    local vb="$B-v" v1 v2 out
    awsc s3 mb "s3://$vb" || why "mb $vb failed" || return 1
    awsc s3api put-bucket-versioning --bucket "$vb" --versioning-configuration Status=Enabled ||
        why "put-bucket-versioning failed" || return 1
    [ "$(awsc s3api get-bucket-versioning --bucket "$vb" --query Status --output text)" = Enabled ] ||
        why "get-bucket-versioning is not Enabled" || return 1
    v1=$(awsc s3api put-object --bucket "$vb" --key doc --body "$WORK/small.txt" --query VersionId --output text) ||
        why "first put-object failed" || return 1
    v2=$(awsc s3api put-object --bucket "$vb" --key doc --body "$WORK/tree/top.bin" --query VersionId --output text) ||
        why "second put-object failed" || return 1
    awsc s3api delete-object --bucket "$vb" --key doc || why "delete-object failed" || return 1
    out=$(awsc s3api list-object-versions --bucket "$vb" --output json) || why "list-object-versions failed" || return 1
    echo "$out"
    python3 - "$out" "$v1" "$v2" <<'EOF' || why "list-object-versions: $(echo "$out" | tr -d '\n ' | cut -c 1-200)" || return 1
import json, sys
out, v1, v2 = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert sorted(v["VersionId"] for v in out["Versions"]) == sorted([v1, v2]), out["Versions"]
assert not any(v["IsLatest"] for v in out["Versions"])
assert [m["IsLatest"] for m in out["DeleteMarkers"]] == [True], out["DeleteMarkers"]
EOF
    awsc s3api get-object --bucket "$vb" --key doc --version-id "$v1" "$WORK/v1.back" >/dev/null ||
        why "get-object --version-id failed" || return 1
    cmp "$WORK/small.txt" "$WORK/v1.back" || why "version $v1 has other bytes" || return 1
    # Empty the bucket version by version, then remove it.
    local ids id
    ids=$(awsc s3api list-object-versions --bucket "$vb" \
        --query '[Versions[].VersionId, DeleteMarkers[].VersionId][]' --output text) || return 1
    for id in $ids; do
        awsc s3api delete-object --bucket "$vb" --key doc --version-id "$id" >/dev/null ||
            why "delete-object --version-id $id failed" || return 1
    done
    awsc s3 rb "s3://$vb" || why "rb $vb failed"
}

t_tagging() {
    awsc s3api put-object --bucket "$B" --key tagged.txt --body "$WORK/small.txt" >/dev/null ||
        why "put-object failed" || return 1
    awsc s3api put-object-tagging --bucket "$B" --key tagged.txt \
        --tagging 'TagSet=[{Key=project,Value=flexdrive},{Key=tier,Value=gold}]' ||
        why "put-object-tagging failed" || return 1
    local tags count
    tags=$(awsc s3api get-object-tagging --bucket "$B" --key tagged.txt \
        --query 'TagSet[].[Key,Value]' --output text | tr -s '\t\n' '  ') || why "get-object-tagging failed" || return 1
    [ "$tags" = "project flexdrive tier gold " ] || why "tags: '$tags'" || return 1
    count=$(awsc s3api get-object --bucket "$B" --key tagged.txt "$WORK/tagged.back" --query TagCount --output text) ||
        why "get-object failed" || return 1
    [ "$count" = 2 ] || why "TagCount $count, expected 2"
}

t_upload_part_copy() {
    local key=pc/copied.bin upload e1 e2
    upload=$(awsc s3api create-multipart-upload --bucket "$B" --key "$key" --query UploadId --output text) ||
        why "create-multipart-upload failed" || return 1
    e1=$(awsc s3api upload-part-copy --bucket "$B" --key "$key" --upload-id "$upload" --part-number 1 \
        --copy-source "$B/big.bin" --copy-source-range "bytes=0-$((5 * MIB - 1))" \
        --query CopyPartResult.ETag --output text) || why "upload-part-copy with a range failed" || return 1
    e2=$(awsc s3api upload-part-copy --bucket "$B" --key "$key" --upload-id "$upload" --part-number 2 \
        --copy-source "$B/meta/small.txt" --query CopyPartResult.ETag --output text) ||
        why "upload-part-copy of a whole object failed" || return 1
    printf '{"Parts":[{"PartNumber":1,"ETag":%s},{"PartNumber":2,"ETag":%s}]}' \
        "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$e1")" \
        "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$e2")" >"$WORK/copy-parts.json"
    awsc s3api complete-multipart-upload --bucket "$B" --key "$key" --upload-id "$upload" \
        --multipart-upload "file://$WORK/copy-parts.json" || why "complete-multipart-upload failed" || return 1
    { head -c $((5 * MIB)) "$WORK/big.bin"; cat "$WORK/small.txt"; } >"$WORK/copied.expected"
    awsc s3 cp --only-show-errors "s3://$B/$key" "$WORK/copied.back" || why "download failed" || return 1
    cmp "$WORK/copied.expected" "$WORK/copied.back" || why "copied object differs"
}

t_object_attributes() {
    local out
    out=$(awsc s3api get-object-attributes --bucket "$B" --key big.bin \
        --object-attributes ETag ObjectSize StorageClass ObjectParts --output json) ||
        why "get-object-attributes failed" || return 1
    echo "$out"
    python3 - "$out" "$BIG_SIZE" <<'EOF' || why "get-object-attributes: $(echo "$out" | tr -d '\n ' | cut -c 1-200)"
import json, sys
out, size = json.loads(sys.argv[1]), int(sys.argv[2])
assert out["ObjectSize"] == size, out.get("ObjectSize")
assert out["StorageClass"] == "STANDARD", out.get("StorageClass")
assert out["ETag"].strip('"').endswith("-13"), out.get("ETag")
assert out["ObjectParts"]["TotalPartsCount"] == 13, out.get("ObjectParts")
EOF
}

t_rm_recursive() {
    awsc s3 rm --only-show-errors --recursive "s3://$B/" || why "aws s3 rm --recursive failed" || return 1
    local left
    left=$(awsc s3 ls --recursive "s3://$B/") || why "listing after rm failed" || return 1
    [ -z "$left" ] || why "objects left: $(echo "$left" | head -n 3 | tr '\n' ' ')"
}

t_rb() {
    awsc s3 rb "s3://$B" || why "aws s3 rb failed" || return 1
    if awsc s3 ls | awk '{print $3}' | grep -qx "$B"; then
        why "bucket still listed after rb"
        return 1
    fi
}

# ---------------------------------------------------------------- rclone ---

# rclone uploads in parts above the cutoff; 16M/5M makes the 20 and 33 MiB
# files multipart uploads (4 and 7 parts).
RCLONE_UPLOAD=(--s3-upload-cutoff 16M --s3-chunk-size 5M)

t_rclone_mkdir() {
    rcl mkdir "fd:$RB" || why "rclone mkdir failed" || return 1
    rcl lsd fd: | grep -q " $RB\$" || why "bucket $RB not in 'rclone lsd fd:'"
}

rclone_check() { # rclone check exits 0 only when there is no difference
    rcl check "$WORK/rtree" "fd:$RB" >"$WORK/check.log" 2>&1
    local rc=$?
    cat "$WORK/check.log"
    [ "$rc" -eq 0 ] || why "rclone check: $(grep -E 'differences' "$WORK/check.log" | head -n 3 | tr '\n' ' ' | cut -c 1-200)" || return 1
    grep -q "0 differences found" "$WORK/check.log" || why "rclone check did not report 0 differences"
}

rclone_count_matches() {
    local want got
    want=$(find "$WORK/rtree" -type f | wc -l)
    got=$(rcl lsf -R --files-only "fd:$RB" | wc -l)
    [ "$got" -eq "$want" ] || why "remote has $got files, local $want"
}

t_rclone_sync() {
    rcl sync "${RCLONE_UPLOAD[@]}" "$WORK/rtree" "fd:$RB" || why "rclone sync failed" || return 1
    rclone_count_matches
}

t_rclone_check() {
    rclone_check
}

t_rclone_resync() {
    local d=$WORK/rtree files
    mapfile -t files < <(find "$d" -type f ! -path "$d/large/*" | LC_ALL=C sort)
    [ "${#files[@]}" -eq 200 ] || why "expected 200 small files, found ${#files[@]}" || return 1
    # grow three files (a size change rclone cannot miss), delete three,
    # shrink a large one, delete the 1-byte one, add two (one in a new dir)
    head -c 777 /dev/urandom >>"${files[10]}"
    head -c 50000 /dev/urandom >>"${files[60]}"
    head -c 1 /dev/urandom >>"${files[120]}"
    rm -f "${files[20]}" "${files[90]}" "${files[150]}"
    head -c 1 /dev/urandom >"$d/large/twenty.bin"
    rm -f "$d/large/one byte.bin"
    mkdir -p "$d/new dir"
    head -c 4096 /dev/urandom >"$d/new dir/new 1.bin"
    head -c $((17 * MIB)) /dev/urandom >"$d/new dir/new large.bin"
    rcl sync "${RCLONE_UPLOAD[@]}" "$d" "fd:$RB" || why "second rclone sync failed" || return 1
    rclone_count_matches || return 1
    rclone_check
}

t_rclone_copy_back() {
    rcl copy "fd:$RB" "$WORK/rtree.back" || why "rclone copy back failed" || return 1
    diff -r "$WORK/rtree" "$WORK/rtree.back" || why "copied-back tree differs"
}

t_rclone_purge() {
    rcl purge "fd:$RB" || why "rclone purge failed" || return 1
    if rcl lsd fd: | grep -q " $RB\$"; then
        why "bucket $RB still exists after purge"
        return 1
    fi
}

# ----------------------------------------------------------------- steps ---

echo "# aws-cli $(aws --version 2>&1 | cut -d' ' -f1), $(rclone version 2>/dev/null | head -n 1)"

step "aws s3 mb" t_mb
step "aws s3 ls lists the bucket" t_ls_buckets
step "aws s3 cp 100 MiB up (multipart, 13 parts)" t_cp_big_up
step "aws s3 cp 100 MiB down, identical" t_cp_big_down
step "aws s3 cp --content-type --metadata, head-object shows them" t_cp_metadata
step "aws s3 sync nested dir up and back, identical" t_sync_up_down
step "aws s3 ls --recursive count matches" t_ls_recursive
step "aws s3api list-objects-v2 pagination (--page-size 2 --max-items 3)" t_list_pagination
step "aws s3api get-object --range" t_range
step "aws s3 presign (SigV2 and SigV4) + curl, identical" t_presign
step "aws s3api head-object of a missing key is 404" t_head_missing
step "aws s3api multipart: create, upload-part x2, list-parts, complete" t_multipart_explicit
step "aws s3api multipart: abort, list-multipart-uploads" t_multipart_abort
step "aws s3api versioning: put-bucket-versioning, list-object-versions, get by version id" t_versioning
step "aws s3api put-object-tagging, get-object-tagging, tag count" t_tagging
step "aws s3api upload-part-copy: a range and a whole object, complete" t_upload_part_copy
step "aws s3api get-object-attributes of a multipart object" t_object_attributes
step "aws s3 rm --recursive empties the bucket" t_rm_recursive
step "aws s3 rb" t_rb

step "rclone mkdir" t_rclone_mkdir
step "rclone sync 203 files (unicode, spaces, multipart)" t_rclone_sync
step "rclone check: 0 differences" t_rclone_check
step "rclone sync after modify/delete/add, check: 0 differences" t_rclone_resync
step "rclone copy back, identical" t_rclone_copy_back
step "rclone purge" t_rclone_purge

if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "server still running after the steps" "it exited; last log lines: $(tail -n 3 "$WORK/server.log" | tr '\n' ' ' | cut -c 1-200)"
fi

finish
