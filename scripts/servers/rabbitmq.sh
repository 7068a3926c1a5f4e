#!/usr/bin/env bash
# Start or stop a throwaway RabbitMQ node for pigeon's tests: ./scripts/servers/rabbitmq.sh start|stop
# (restart: stop and start the same node, keeping its data and port, as the fault tests do).
#
# Never touches the distro's service: a private node (its own node name, Erlang cookie,
# epmd, plugins file and config) runs from a temporary directory (owned by the rabbitmq
# user when run as root), listens on 127.0.0.1 only, on free AMQP, distribution and epmd
# ports, and writes its URL to .servers/rabbitmq.env. Stopped by its PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# PIGEON_RABBITMQ_STATE: another state directory, for a test's own node (restart keeps its data).
base="${PIGEON_RABBITMQ_STATE:-$root/.servers/rabbitmq}"
envfile="$base.env"
pidfile="$base/rabbitmq.pid"
dirlink="$base/dir"        # where the node's own directory is
epmdfile="$base/epmd.port"
server=/usr/lib/rabbitmq/bin/rabbitmq-server

die() { echo "rabbitmq.sh: $*" >&2; exit 1; }

running() {
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

install_rabbitmq() {
    [[ -x "$server" ]] && return 0
    command -v apt-get >/dev/null || die "rabbitmq-server is not installed and apt-get is unavailable; install RabbitMQ 3.10+ yourself"
    echo "rabbitmq.sh: rabbitmq-server not found; installing it with apt-get" >&2
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    # The package's postinst may start the distro service; we never use it.
    { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q rabbitmq-server; } >&2 \
        || die "'apt-get install rabbitmq-server' failed (no network, no root, or no such package)"
    [[ -x "$server" ]] || die "rabbitmq-server installed but $server is missing"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Ready when the AMQP listener answers the protocol header with connection.start.
amqp_ready() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        sys.exit(0 if s.recv(1)[:1] == b"\x01" else 1)
except OSError:
    sys.exit(1)
PY
}

as_owner() {
    if [[ "$(id -u)" -eq 0 ]]; then runuser -u rabbitmq -- "$@"; else "$@"; fi
}

start() {
    if running && [[ -f "$envfile" ]]; then
        echo "rabbitmq.sh: already running (pid $(cat "$pidfile")); $(cat "$envfile")"
        return 0
    fi
    running && stop  # ours, but its URL is lost: start afresh rather than guess
    install_rabbitmq
    remove_data
    mkdir -p "$base"
    local dir
    dir="$(mktemp -d /tmp/pigeon-rabbitmq.XXXXXX)"
    echo "$dir" >"$dirlink"
    echo "$(free_port)" >"$epmdfile"
    cat >"$base/node" <<NODE
port=$(free_port)
dist=$(free_port)
node=pigeon-$(basename "$dir" | cut -d. -f2 | tr 'A-Z' 'a-z')@localhost
NODE
    mkdir -p "$dir/mnesia" "$dir/log"
    echo "[]." >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"
    python3 -c 'import secrets; print(secrets.token_hex(20).upper(), end="")' >"$dir/.erlang.cookie"
    chmod 400 "$dir/.erlang.cookie"
    # shellcheck source=/dev/null
    . "$base/node"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
log.file.level = warning
log.console = false
CONF
    if [[ "$(id -u)" -eq 0 ]]; then
        id rabbitmq >/dev/null 2>&1 || die "running as root needs a 'rabbitmq' user to own the node"
        chown -R rabbitmq: "$dir"
    fi
    launch
}

# Run the node of "$base" (its directory, ports and name) and wait until it answers.
launch() {
    local dir port dist node epmd
    dir="$(cat "$dirlink")"; epmd="$(cat "$epmdfile")"
    # shellcheck source=/dev/null
    . "$base/node"
    rm -f "$dir/rabbitmq.pid"
    # Open files as Debian's service unit allows (LimitNOFILE=65536), within the hard limit. The
    # node sizes its file-handle budget from this; at 1024 it had room for ~300 quorum queues,
    # then accepted no more connections. Raised in the node's own shell: runuser resets it.
    local nofile
    nofile="$(ulimit -Hn)"
    [[ "$nofile" == unlimited || "$nofile" -gt 65536 ]] && nofile=65536
    # RUNNING_UNDER_SYSTEMD: the script execs the VM itself (no signal-forwarding shell), so the
    # pid file names the process that stops on SIGTERM. setsid: the node outlives this script.
    as_owner env -i PATH="/usr/sbin:/usr/bin:/bin" HOME="$dir" LANG=C.UTF-8 \
        RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
        RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$epmd" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" RUNNING_UNDER_SYSTEMD=1 \
        sh -c 'ulimit -n "$0" 2>/dev/null; exec setsid "$1"' "$nofile" "$server" </dev/null >>"$dir/log/console.log" 2>&1 &
    for _ in $(seq 1 900); do
        if [[ -s "$dir/rabbitmq.pid" ]] && amqp_ready "$port"; then
            cp "$dir/rabbitmq.pid" "$pidfile"
            echo "PIGEON_TEST_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$port/" >"$envfile"
            echo "rabbitmq.sh: started $node on 127.0.0.1:$port (pid $(cat "$pidfile")); wrote $envfile"
            return 0
        fi
        sleep 0.1
    done
    [[ -s "$dir/rabbitmq.pid" ]] && cp "$dir/rabbitmq.pid" "$pidfile" && stop
    tail -n 30 "$dir/log/console.log" >&2 || true
    die "the node did not answer on 127.0.0.1:$port within 90 s"
}

# Stop the node by its PID, keeping its data; true if it was running.
halt() {
    running || return 1
    local pid
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "rabbitmq.sh: stopped (pid $pid)"
}

restart() {
    [[ -f "$dirlink" && -f "$base/node" ]] || die "no node to restart in $base (start one first)"
    halt || true
    launch
}

stop() {
    halt || echo "rabbitmq.sh: not running"
    # The node started its own epmd on a private port; stop that one only. It refuses while it
    # still lists the node, which it may for a moment after the node died.
    if [[ -f "$epmdfile" ]]; then
        for _ in $(seq 1 50); do
            ERL_EPMD_PORT="$(cat "$epmdfile")" epmd -names >/dev/null 2>&1 || break
            ERL_EPMD_PORT="$(cat "$epmdfile")" epmd -kill >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    remove_data
}

remove_data() {
    local dir
    if [[ -f "$dirlink" ]]; then
        dir="$(cat "$dirlink")"
        case "$dir" in /tmp/pigeon-rabbitmq.*) rm -rf "$dir" ;; esac
    fi
    rm -rf "$base" "$envfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) restart ;;
    *) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
