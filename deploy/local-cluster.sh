#!/usr/bin/env bash
# A local Flexdrive cluster of separate processes on loopback, for
# development and for watching nodes come and go:
#
#   deploy/local-cluster.sh start  [--storage N] [--gateways N] [--dir DIR] [--base-port P]
#   deploy/local-cluster.sh status [--dir DIR]
#   deploy/local-cluster.sh stop   [--dir DIR]
#
# N storage nodes (`flexdrive storage`, default 5, env FLEXDRIVE_STORAGE_NODES)
# and M gateways (`flexdrive gateway`, default 2, env FLEXDRIVE_GATEWAYS), all
# from one binary: FLEXDRIVE_BIN (default target/release/flexdrive, relative to
# the repository root; built with cargo if missing). The gossip addresses of
# storage nodes 1 to 3 are the seeds of every process. The cluster secret and the root
# credentials reach every process as FLEXDRIVE_CLUSTER_SECRET,
# FLEXDRIVE_ROOT_ACCESS_KEY and FLEXDRIVE_ROOT_SECRET_KEY.
#
# Ports from --base-port P (default 9100):
#   gateway j  S3          P + j - 1        (9100, 9101, ...)
#   storage i  HTTP        P + 20 + i - 1   (9120, ...)
#   storage i  gossip/UDP  P + 40 + i - 1   (9140, ...)
#   gateway j  gossip/UDP  P + 60 + j - 1   (9160, ...)
#   gateway 1  admin API   P + 80           (9180; `flexdrive admin` talks to it)
#
# Files under DIR (default ./data/local-cluster):
#   cluster.env       cluster secret, root credentials and admin token, made once, reused
#   storage-I/        data directory of storage node I
#   logs/NAME.log     output of each process
#   pids/NAME.pid     pid of each process
#   layout            one line per process: name, role, addresses
set -u

# Limits.
MAX_NODES=20          # per role: the port blocks above are 20 wide
START_POLLS=120       # x 0.5 s: wait at most about 60 s for the gateways
STOP_POLLS=75         # x 0.2 s: wait at most 15 s after TERM, then KILL

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}
die() {
    echo "local-cluster: $*" >&2
    exit 1
}

CMD=""
STORAGE=${FLEXDRIVE_STORAGE_NODES:-5}
GATEWAYS=${FLEXDRIVE_GATEWAYS:-2}
DIR=""
BASE_PORT=9100

while [ $# -gt 0 ]; do
    case $1 in
        start | stop | status)
            [ -z "$CMD" ] || usage
            CMD=$1
            ;;
        --storage) [ $# -ge 2 ] || usage; STORAGE=$2; shift ;;
        --storage=*) STORAGE=${1#*=} ;;
        --gateways) [ $# -ge 2 ] || usage; GATEWAYS=$2; shift ;;
        --gateways=*) GATEWAYS=${1#*=} ;;
        --dir) [ $# -ge 2 ] || usage; DIR=$2; shift ;;
        --dir=*) DIR=${1#*=} ;;
        --base-port) [ $# -ge 2 ] || usage; BASE_PORT=$2; shift ;;
        --base-port=*) BASE_PORT=${1#*=} ;;
        -h | --help) usage ;;
        *) echo "local-cluster: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done
[ -n "$CMD" ] || usage

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
in_range() { is_uint "$1" && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$STORAGE" 1 "$MAX_NODES" || die "--storage must be 1..$MAX_NODES (got '$STORAGE')"
in_range "$GATEWAYS" 1 "$MAX_NODES" || die "--gateways must be 1..$MAX_NODES (got '$GATEWAYS')"
in_range "$BASE_PORT" 1024 $((65535 - 81)) || die "--base-port must be 1024..$((65535 - 81)) (got '$BASE_PORT')"

# --dir is relative to where the script was called from; the default and the
# binary are relative to the repository root.
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd) || die "cannot find the repository root"
if [ -z "$DIR" ]; then
    DIR="$REPO_ROOT/data/local-cluster"
elif [ "${DIR#/}" = "$DIR" ]; then
    DIR="$(pwd)/$DIR"
fi
cd "$REPO_ROOT" || die "cannot cd to $REPO_ROOT"

PIDS="$DIR/pids"
LOGS="$DIR/logs"
LAYOUT="$DIR/layout"

gateway_s3_port() { echo $((BASE_PORT + $1 - 1)); }
storage_http_port() { echo $((BASE_PORT + 20 + $1 - 1)); }
storage_gossip_port() { echo $((BASE_PORT + 40 + $1 - 1)); }
gateway_gossip_port() { echo $((BASE_PORT + 60 + $1 - 1)); }
admin_port() { echo $((BASE_PORT + 80)); }

# pid_of NAME: prints the pid if NAME's pid file names a live flexdrive
# process of ours (guards against a pid reused by something else).
pid_of() {
    local f="$PIDS/$1.pid" pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null)
    is_uint "$pid" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--gossip-addr" || return 1
    fi
    echo "$pid"
}

# http_code URL: the HTTP status, or 000 when nothing answers.
http_code() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

tcp_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

random_hex() { # $1 = bytes
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

load_or_make_env() {
    local env="$DIR/cluster.env"
    if [ ! -f "$env" ]; then
        (
            umask 077
            {
                echo "# Made by deploy/local-cluster.sh; reused on every start."
                echo "FLEXDRIVE_CLUSTER_SECRET=$(random_hex 32)"
                echo "FLEXDRIVE_ROOT_ACCESS_KEY=FDROOT$(random_hex 7 | tr 'a-f' 'A-F')"
                echo "FLEXDRIVE_ROOT_SECRET_KEY=$(random_hex 20)"
            } >"$env"
        ) || die "cannot write $env"
        echo "local-cluster: made new cluster secret and root credentials in $env"
    fi
    # Older files lack the admin token: add one.
    if ! grep -q '^FLEXDRIVE_ADMIN_TOKEN=' "$env"; then
        echo "FLEXDRIVE_ADMIN_TOKEN=$(random_hex 24)" >>"$env" || die "cannot write $env"
    fi
    # shellcheck source=/dev/null
    . "$env"
    if [ -z "${FLEXDRIVE_CLUSTER_SECRET:-}" ] || [ -z "${FLEXDRIVE_ROOT_ACCESS_KEY:-}" ] ||
        [ -z "${FLEXDRIVE_ROOT_SECRET_KEY:-}" ] || [ -z "${FLEXDRIVE_ADMIN_TOKEN:-}" ]; then
        die "$env lacks a secret or a key: remove it to make new ones"
    fi
    # Handed to the processes through the environment (the binary reads
    # FLEXDRIVE_CLUSTER_SECRET like --cluster-secret) so that the secret does
    # not show in `ps`.
    export FLEXDRIVE_CLUSTER_SECRET FLEXDRIVE_ROOT_ACCESS_KEY FLEXDRIVE_ROOT_SECRET_KEY FLEXDRIVE_ADMIN_TOKEN
}

# launch NAME ARGS...: starts the binary in the background, detached from
# this shell, unless NAME is already running.
launch() {
    local name=$1 pid
    shift
    if pid=$(pid_of "$name"); then
        echo "  $name already running (pid $pid)"
        return 0
    fi
    nohup "$BIN" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDS/$name.pid"
    echo "  $name started (pid $pid)"
}

do_start() {
    BIN=${FLEXDRIVE_BIN:-target/release/flexdrive}
    if [ ! -x "$BIN" ]; then
        [ -z "${FLEXDRIVE_BIN:-}" ] || die "FLEXDRIVE_BIN=$BIN is not an executable file"
        echo "local-cluster: $BIN missing, building it (cargo build --release --bin flexdrive)"
        cargo build --release --bin flexdrive || die "cargo build failed"
    fi
    command -v curl >/dev/null 2>&1 || die "curl is needed to wait for the gateways"
    mkdir -p "$DIR" "$PIDS" "$LOGS" || die "cannot create $DIR"
    load_or_make_env

    # Refuse ports taken by something that is not this cluster.
    local i j port name
    for i in $(seq "$STORAGE"); do
        port=$(storage_http_port "$i")
        if ! pid_of "storage-$i" >/dev/null && tcp_port_busy "$port"; then
            die "port $port (storage-$i HTTP) is in use: stop what holds it or pick --base-port"
        fi
    done
    for j in $(seq "$GATEWAYS"); do
        port=$(gateway_s3_port "$j")
        if ! pid_of "gateway-$j" >/dev/null && tcp_port_busy "$port"; then
            die "port $port (gateway-$j S3) is in use: stop what holds it or pick --base-port"
        fi
    done

    local seed zone s
    # The first three storage nodes are everybody's seeds: a restarted seed
    # rejoins through the other two instead of waiting to be found.
    seed="127.0.0.1:$(storage_gossip_port 1)"
    for s in 2 3; do
        [ "$s" -le "$STORAGE" ] && seed="$seed,127.0.0.1:$(storage_gossip_port "$s")"
    done
    : >"$LAYOUT"
    echo "local-cluster: starting $STORAGE storage nodes and $GATEWAYS gateways in $DIR (seeds $seed)"
    # Storage node 1 first: it is a seed for everybody (its own too, harmlessly).
    for i in $(seq "$STORAGE"); do
        name="storage-$i"
        mkdir -p "$DIR/$name"
        # Three zones, round robin, so placement can spread replicas.
        zone="zone-$(((i - 1) % 3 + 1))"
        launch "$name" storage \
            --data-dir "$DIR/$name" \
            --http-addr "127.0.0.1:$(storage_http_port "$i")" \
            --gossip-addr "127.0.0.1:$(storage_gossip_port "$i")" \
            --seeds "$seed" \
            --zone "$zone"
        echo "$name storage http=127.0.0.1:$(storage_http_port "$i") gossip=127.0.0.1:$(storage_gossip_port "$i") zone=$zone" >>"$LAYOUT"
        if [ "$i" = 1 ]; then sleep 0.5; fi
    done
    local admin
    for j in $(seq "$GATEWAYS"); do
        name="gateway-$j"
        # Gateway 1 serves the admin API (token FLEXDRIVE_ADMIN_TOKEN).
        admin=()
        [ "$j" = 1 ] && admin=(--admin-addr "127.0.0.1:$(admin_port)")
        launch "$name" gateway \
            --s3-addr "127.0.0.1:$(gateway_s3_port "$j")" \
            --gossip-addr "127.0.0.1:$(gateway_gossip_port "$j")" \
            --seeds "$seed" "${admin[@]+"${admin[@]}"}"
        echo "$name gateway s3=http://127.0.0.1:$(gateway_s3_port "$j") gossip=127.0.0.1:$(gateway_gossip_port "$j")" >>"$LAYOUT"
    done

    # Wait (bounded) for every gateway to answer HTTP; stop early if a
    # process died.
    local pending poll code
    for poll in $(seq "$START_POLLS"); do
        pending=0
        for name in $(list_names); do
            if ! pid_of "$name" >/dev/null; then
                echo "local-cluster: $name exited; last lines of $LOGS/$name.log:" >&2
                tail -n 20 "$LOGS/$name.log" >&2
                die "start failed (the others are still running: '$0 stop --dir $DIR' stops them)"
            fi
        done
        for j in $(seq "$GATEWAYS"); do
            code=$(http_code "http://127.0.0.1:$(gateway_s3_port "$j")/")
            case $code in
                [1-5][0-9][0-9]) ;;
                *) pending=$((pending + 1)) ;;
            esac
        done
        [ "$pending" -eq 0 ] && break
        if [ "$poll" -eq "$START_POLLS" ]; then
            for j in $(seq "$GATEWAYS"); do
                echo "local-cluster: last lines of $LOGS/gateway-$j.log:" >&2
                tail -n 10 "$LOGS/gateway-$j.log" >&2
            done
            die "$pending gateway(s) did not answer within about $((START_POLLS / 2)) s"
        fi
        sleep 0.5
    done

    local endpoints=""
    for j in $(seq "$GATEWAYS"); do
        endpoints="$endpoints http://127.0.0.1:$(gateway_s3_port "$j")"
    done
    cat <<EOF

Flexdrive local cluster is up: $STORAGE storage nodes, $GATEWAYS gateways.
  S3 endpoints:$endpoints
  access key:   $FLEXDRIVE_ROOT_ACCESS_KEY
  secret key:   $FLEXDRIVE_ROOT_SECRET_KEY
  logs:         $LOGS/
Try:
  export AWS_ACCESS_KEY_ID=$FLEXDRIVE_ROOT_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$FLEXDRIVE_ROOT_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
  aws --endpoint-url http://127.0.0.1:$(gateway_s3_port 1) s3 mb s3://demo
  aws --endpoint-url http://127.0.0.1:$(gateway_s3_port 1) s3 cp README.md s3://demo/
Admin (status, node list, node remove ID, repair):
  FLEXDRIVE_ADMIN_TOKEN=$FLEXDRIVE_ADMIN_TOKEN $BIN admin --admin-endpoint http://127.0.0.1:$(admin_port) status
Status: $0 status --dir $DIR
Stop:   $0 stop --dir $DIR
EOF
}

# Names of the processes this directory knows about (from the pid files).
list_names() {
    local f
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        basename "$f" .pid
    done | sort -t- -k1,1r -k2,2n
}

do_stop() {
    [ -d "$PIDS" ] || { echo "local-cluster: nothing started in $DIR"; return 0; }
    local name pid alive=()
    for name in $(list_names); do
        if pid=$(pid_of "$name"); then
            kill -TERM "$pid" 2>/dev/null && alive+=("$name:$pid")
            echo "  $name: TERM sent (pid $pid)"
        else
            echo "  $name: not running"
            rm -f "$PIDS/$name.pid"
        fi
    done
    local poll entry left
    for poll in $(seq "$STOP_POLLS"); do
        left=0
        for entry in "${alive[@]+"${alive[@]}"}"; do
            kill -0 "${entry#*:}" 2>/dev/null && left=$((left + 1))
        done
        [ "$left" -eq 0 ] && break
        [ "$poll" -lt "$STOP_POLLS" ] && sleep 0.2
    done
    for entry in "${alive[@]+"${alive[@]}"}"; do
        name=${entry%%:*}
        pid=${entry#*:}
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null
            echo "  $name: did not exit within $((STOP_POLLS / 5)) s, KILL sent"
        fi
        rm -f "$PIDS/$name.pid"
    done
    echo "local-cluster: stopped (data kept in $DIR)"
}

do_status() {
    local names name pid running=0 total=0 info code url
    names=$(list_names)
    if [ -z "$names" ]; then
        echo "local-cluster: nothing started in $DIR"
        return 1
    fi
    for name in $names; do
        total=$((total + 1))
        info=$(grep "^$name " "$LAYOUT" 2>/dev/null | cut -d' ' -f3-)
        if pid=$(pid_of "$name"); then
            running=$((running + 1))
            case $info in
                s3=*)
                    url=${info%% *}
                    code=$(http_code "${url#s3=}/")
                    printf '%-12s running  pid %-7s %s (HTTP %s)\n' "$name" "$pid" "$info" "$code"
                    ;;
                *) printf '%-12s running  pid %-7s %s\n' "$name" "$pid" "$info" ;;
            esac
        else
            printf '%-12s STOPPED            %s (log: %s)\n' "$name" "$info" "$LOGS/$name.log"
        fi
    done
    echo "$running of $total running"
    [ "$running" -eq "$total" ]
}

case $CMD in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
esac
