#!/usr/bin/env bash
# Start or stop a throwaway Redis for pigeon's tests: ./scripts/servers/redis.sh start|stop
#
# Never touches the distro's service: it runs its own redis-server on 127.0.0.1,
# on a free port, without persistence, and writes the URL to .servers/redis.env.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base="$root/.servers/redis"
envfile="$root/.servers/redis.env"
pidfile="$base/redis.pid"

running() {
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

install_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    echo "redis-server not found; installing it with apt-get" >&2
    if ! command -v apt-get >/dev/null; then
        echo "error: redis-server is not installed and apt-get is not available; install Redis 7+ yourself" >&2
        exit 1
    fi
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    # The package's postinst may try to start the distro service; we never use it.
    if ! { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server; } >&2; then
        echo "error: 'apt-get install redis-server' failed (no network, no root, or no such package); install Redis yourself" >&2
        exit 1
    fi
}

free_port() {
    local py
    py="$(command -v python3 || command -v python)"
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if running; then
        echo "redis already running (pid $(cat "$pidfile")); $(cat "$envfile")"
        return 0
    fi
    install_redis
    rm -rf "$base"
    mkdir -p "$base"
    local port data
    port="$(free_port)"
    data="$(mktemp -d "$base/data.XXXXXX")"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --dir "$data" --daemonize yes --pidfile "$pidfile" --logfile "$base/redis.log" \
        --maxmemory-policy noeviction
    for _ in $(seq 1 100); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            echo "PIGEON_TEST_REDIS_URL=redis://127.0.0.1:$port/0" >"$envfile"
            echo "redis started on 127.0.0.1:$port (pid $(cat "$pidfile")); wrote $envfile"
            return 0
        fi
        sleep 0.1
    done
    echo "error: redis-server did not answer PING on port $port; see $base/redis.log" >&2
    [[ -f "$base/redis.log" ]] && tail -n 20 "$base/redis.log" >&2
    exit 1
}

stop() {
    if running; then
        local pid
        pid="$(cat "$pidfile")"
        kill "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "redis stopped (pid $pid)"
    else
        echo "redis not running"
    fi
    rm -rf "$base" "$envfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
esac
