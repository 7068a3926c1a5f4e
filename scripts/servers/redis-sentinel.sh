#!/usr/bin/env bash
# Start or stop a throwaway Redis Sentinel group for pigeon's tests:
#   scripts/servers/redis-sentinel.sh start|stop
#
# One master, one replica and three sentinels watching them as the service "pigeon", all
# redis-server processes on 127.0.0.1, on free ports, without persistence (sentinels run
# as `redis-server CONF --sentinel`, so Debian's redis-server package is enough). Writes
# the URL to .servers/redis-sentinel.env, or to $PIGEON_SENTINEL_DIR/env when that names a
# directory (a failover test's own group). Stops only the processes it started, by PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -n "${PIGEON_SENTINEL_DIR:-}" ]]; then
    base="$PIGEON_SENTINEL_DIR"
    envfile="$base/env"
else
    base="$root/.servers/redis-sentinel"
    envfile="$root/.servers/redis-sentinel.env"
fi
SERVICE=pigeon

die() { echo "redis-sentinel.sh: $*" >&2; exit 1; }

running() {
    local f
    for f in "$base"/*.pid; do
        [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && return 0
    done
    return 1
}

install_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    echo "redis-sentinel.sh: redis-server not found; installing it with apt-get" >&2
    command -v apt-get >/dev/null || die "redis-server is not installed and apt-get is not available; install Redis 7+"
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server; } >&2 \
        || die "'apt-get install redis-server' failed; install Redis yourself"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {  # wait_for PORT COMMAND... : until redis-cli's answer on PORT contains $expect
    local port="$1"
    shift
    for _ in $(seq 1 150); do
        redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null | grep -q "$expect" && return 0
        sleep 0.1
    done
    return 1
}

server() {  # server NAME PORT [ARGS...]
    local name="$1" port="$2"
    shift 2
    mkdir -p "$base/$name"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$base/$name" \
        --daemonize yes --pidfile "$base/$name.pid" --logfile "$base/$name.log" \
        --maxmemory-policy noeviction "$@"
}

start() {
    if running && [[ -f "$envfile" ]]; then
        echo "redis-sentinel.sh: already running; $(cat "$envfile")"
        return 0
    fi
    install_redis
    stop >/dev/null
    mkdir -p "$base"
    local master replica port conf i sentinels=() expect
    master="$(free_port)"
    replica="$(free_port)"
    server master "$master"
    server replica "$replica" --replicaof 127.0.0.1 "$master"
    expect=master_link_status:up
    wait_for "$replica" info replication || { stop; die "the replica did not sync with the master"; }
    for i in 1 2 3; do
        port="$(free_port)"
        conf="$base/sentinel$i.conf"  # a sentinel rewrites its own config file: one each
        cat >"$conf" <<EOF
bind 127.0.0.1
port $port
daemonize yes
pidfile $base/sentinel$i.pid
logfile $base/sentinel$i.log
dir $base
sentinel monitor $SERVICE 127.0.0.1 $master 2
sentinel down-after-milliseconds $SERVICE 1000
sentinel failover-timeout $SERVICE 5000
sentinel parallel-syncs $SERVICE 1
EOF
        redis-server "$conf" --sentinel
        sentinels+=("127.0.0.1:$port")
    done
    # Ready when every sentinel knows the replica and the two other sentinels: a failover
    # needs a quorum of them and a replica to promote.
    for i in 0 1 2; do
        port="${sentinels[i]##*:}"
        expect=num-other-sentinels
        for _ in $(seq 1 150); do
            if redis-cli -h 127.0.0.1 -p "$port" sentinel master "$SERVICE" 2>/dev/null \
                | tr '\n' ' ' | grep -Eq 'num-slaves 1 .*num-other-sentinels 2'; then
                continue 2
            fi
            sleep 0.1
        done
        stop
        die "sentinel on port $port did not find the replica and its peers"
    done
    local joined
    joined="$(IFS=,; echo "${sentinels[*]}")"
    {
        echo "PIGEON_TEST_REDIS_SENTINEL_URL=redis+sentinel://$joined/$SERVICE/0"
    } >"$envfile"
    echo "redis-sentinel.sh: master 127.0.0.1:$master (pid $(cat "$base/master.pid")), replica" \
        "127.0.0.1:$replica, sentinels ${sentinels[*]}; wrote $envfile"
}

stop() {
    local f pid stopped=0
    for f in "$base"/*.pid; do
        [[ -f "$f" ]] || continue
        pid="$(cat "$f")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            stopped=$((stopped + 1))
        fi
    done
    echo "redis-sentinel.sh: stopped $stopped processes"
    rm -rf "$base" "$envfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
