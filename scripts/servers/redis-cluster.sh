#!/usr/bin/env bash
# Start or stop a throwaway Redis Cluster of three masters for pigeon's tests:
#   scripts/servers/redis-cluster.sh start|stop
#
# Three redis-server processes with --cluster-enabled yes on 127.0.0.1, on free ports,
# without persistence, joined by `redis-cli --cluster create`; writes the URL to
# .servers/redis-cluster.env. Stops only the processes it started, by PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base="$root/.servers/redis-cluster"
envfile="$root/.servers/redis-cluster.env"
NODES=3

die() { echo "redis-cluster.sh: $*" >&2; exit 1; }

running() {
    local f
    for f in "$base"/node*.pid; do
        [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && return 0
    done
    return 1
}

install_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    echo "redis-cluster.sh: redis-server not found; installing it with apt-get" >&2
    command -v apt-get >/dev/null || die "redis-server is not installed and apt-get is not available; install Redis 7+"
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server; } >&2 \
        || die "'apt-get install redis-server' failed; install Redis yourself"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if running && [[ -f "$envfile" ]]; then
        echo "redis-cluster.sh: already running; $(cat "$envfile")"
        return 0
    fi
    install_redis
    stop >/dev/null
    mkdir -p "$base"
    local i port ports=() addrs=()
    for i in $(seq 1 "$NODES"); do
        port="$(free_port)"
        # Cluster nodes also listen on port + 10000 for the cluster bus.
        while [[ "$port" -gt 55535 ]]; do port="$(free_port)"; done
        mkdir -p "$base/node$i"
        redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
            --cluster-config-file "$base/node$i/nodes.conf" --cluster-node-timeout 2000 \
            --save '' --appendonly no --dir "$base/node$i" --daemonize yes \
            --pidfile "$base/node$i.pid" --logfile "$base/node$i.log" --maxmemory-policy noeviction
        ports+=("$port")
        addrs+=("127.0.0.1:$port")
    done
    for port in "${ports[@]}"; do
        for _ in $(seq 1 100); do
            redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
            sleep 0.1
        done
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$base/create.log" 2>&1 \
        || { cat "$base/create.log" >&2; stop; die "redis-cli --cluster create failed"; }
    for _ in $(seq 1 100); do
        if redis-cli -h 127.0.0.1 -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
            local joined
            joined="$(IFS=,; echo "${addrs[*]}")"
            echo "PIGEON_TEST_REDIS_CLUSTER_URL=redis+cluster://$joined" >"$envfile"
            echo "redis-cluster.sh: started ${addrs[*]}; wrote $envfile"
            return 0
        fi
        sleep 0.1
    done
    stop
    die "the cluster did not reach cluster_state:ok"
}

stop() {
    local f pid stopped=0
    for f in "$base"/node*.pid; do
        [[ -f "$f" ]] || continue
        pid="$(cat "$f")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            stopped=$((stopped + 1))
        fi
    done
    echo "redis-cluster.sh: stopped $stopped nodes"
    rm -rf "$base" "$envfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
