#!/usr/bin/env bash
# A throwaway three-node RabbitMQ cluster on loopback, for pigeon's cluster test:
#   scripts/servers/rabbitmq-cluster.sh start|stop            the whole cluster
#   scripts/servers/rabbitmq-cluster.sh stop-node|start-node N   one node (1-3), keeping its data
#   scripts/servers/rabbitmq-cluster.sh leader QUEUE           the node number leading a quorum queue
#
# optional: started by scripts/with-servers under CI, or when PIGEON_SERVERS names it (three
# Erlang VMs are too much to start on every local run; its test skips, saying so, without it).
#
# Three private nodes (their own names, AMQP and distribution ports and data directories, one
# Erlang cookie and one private epmd), never the distro's service; joined by classic peer
# discovery; loopback only; owned by the rabbitmq user when run as root. Writes the nodes' URLs
# to .servers/rabbitmq-cluster.env. Stopped by their PIDs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base="$root/.servers/rabbitmq-cluster"
envfile="$base.env"
server=/usr/lib/rabbitmq/bin/rabbitmq-server
NODES=3

die() { echo "rabbitmq-cluster.sh: $*" >&2; exit 1; }

pid_of() { cat "$base/n$1.pid" 2>/dev/null; }
up() { local pid; pid="$(pid_of "$1")" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

running() {
    local i
    for i in $(seq 1 "$NODES"); do up "$i" && return 0; done
    return 1
}

install_rabbitmq() {
    [[ -x "$server" ]] && return 0
    command -v apt-get >/dev/null || die "rabbitmq-server is not installed and apt-get is unavailable; install RabbitMQ 3.10+ yourself"
    echo "rabbitmq-cluster.sh: rabbitmq-server not found; installing it with apt-get" >&2
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q rabbitmq-server; } >&2 \
        || die "'apt-get install rabbitmq-server' failed (no network, no root, or no such package)"
    [[ -x "$server" ]] || die "rabbitmq-server installed but $server is missing"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

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

# The cluster's settings: cluster.vars (dir, epmd, suffix) and n<i>.vars (port, dist, node).
load() {
    [[ -f "$base/cluster.vars" ]] || die "no cluster in $base (start it first)"
    # shellcheck source=/dev/null
    . "$base/cluster.vars"
    [[ -z "${1:-}" ]] || . "$base/n$1.vars"
}

start() {
    if running && [[ -f "$envfile" ]]; then
        echo "rabbitmq-cluster.sh: already running; $(tr '\n' ' ' <"$envfile")"
        return 0
    fi
    running && stop
    install_rabbitmq
    remove_data
    mkdir -p "$base"
    local dir cookie i urls=()
    dir="$(mktemp -d /tmp/pigeon-rabbitmq-cluster.XXXXXX)"
    cookie="$(python3 -c 'import secrets; print(secrets.token_hex(20).upper())')"
    printf 'dir=%s\nepmd=%s\nsuffix=%s\n' "$dir" "$(free_port)" \
        "$(basename "$dir" | cut -d. -f2 | tr 'A-Z' 'a-z')" >"$base/cluster.vars"
    load
    for i in $(seq 1 "$NODES"); do
        printf 'port=%s\ndist=%s\nnode=pigeon-c%s-%s@localhost\n' "$(free_port)" "$(free_port)" "$i" "$suffix" \
            >"$base/n$i.vars"
    done
    for i in $(seq 1 "$NODES"); do
        mkdir -p "$dir/n$i/mnesia" "$dir/n$i/log"
        echo "[]." >"$dir/n$i/enabled_plugins"
        : >"$dir/n$i/rabbitmq-env.conf"
        printf '%s' "$cookie" >"$dir/n$i/.erlang.cookie"
        chmod 400 "$dir/n$i/.erlang.cookie"
        # shellcheck source=/dev/null
        . "$base/n$i.vars"
        {
            echo "listeners.tcp.default = 127.0.0.1:$port"
            echo "loopback_users.guest = true"
            echo "log.file.level = warning"
            echo "log.console = false"
            echo "cluster_formation.peer_discovery_backend = classic_config"
            echo "cluster_formation.randomized_startup_delay_range.min = 0"
            echo "cluster_formation.randomized_startup_delay_range.max = 1"
            local j
            for j in $(seq 1 "$NODES"); do
                echo "cluster_formation.classic_config.nodes.$j = pigeon-c$j-$suffix@localhost"
            done
        } >"$dir/n$i/rabbitmq.conf"
        urls+=("amqp://guest:guest@127.0.0.1:$port/")
    done
    if [[ "$(id -u)" -eq 0 ]]; then
        id rabbitmq >/dev/null 2>&1 || die "running as root needs a 'rabbitmq' user to own the nodes"
        chown -R rabbitmq: "$dir"
    fi
    # The first node forms the cluster; the others join it as they boot (together, to save time).
    launch 1 && wait_ready 1 || { stop; die "node 1 did not start"; }
    for i in $(seq 2 "$NODES"); do launch "$i"; done
    for i in $(seq 2 "$NODES"); do wait_ready "$i" || { stop; die "node $i did not start"; }; done
    members=$(ctl 1 eval 'length(rabbit_nodes:all_running()).' 2>/dev/null | tail -n 1)
    [[ "$members" == "$NODES" ]] || { stop; die "the nodes did not form one cluster (running members: ${members:-?})"; }
    {
        echo "PIGEON_TEST_RABBITMQ_CLUSTER_URL=${urls[0]}"
        echo "PIGEON_TEST_RABBITMQ_CLUSTER_URLS='${urls[*]}'"
    } >"$envfile"
    echo "rabbitmq-cluster.sh: started $NODES nodes (${urls[*]}); wrote $envfile"
}

# Run node N from its directory, in the background; its pid file names the VM itself.
launch() {
    local port dist node dir epmd suffix nofile
    load "$1"
    rm -f "$dir/n$1/rabbitmq.pid"
    # As rabbitmq.sh: the open-files limit Debian's unit gives, raised in the node's own shell.
    nofile="$(ulimit -Hn)"
    [[ "$nofile" == unlimited || "$nofile" -gt 65536 ]] && nofile=65536
    as_owner env -i PATH="/usr/sbin:/usr/bin:/bin" HOME="$dir/n$1" LANG=C.UTF-8 \
        RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
        RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$epmd" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_MNESIA_BASE="$dir/n$1/mnesia" RABBITMQ_LOG_BASE="$dir/n$1/log" \
        RABBITMQ_CONFIG_FILE="$dir/n$1/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/n$1/advanced.config" \
        RABBITMQ_CONF_ENV_FILE="$dir/n$1/rabbitmq-env.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/n$1/enabled_plugins" \
        RABBITMQ_PID_FILE="$dir/n$1/rabbitmq.pid" RUNNING_UNDER_SYSTEMD=1 \
        sh -c 'ulimit -n "$0" 2>/dev/null; exec setsid "$1"' "$nofile" "$server" </dev/null \
        >>"$dir/n$1/log/console.log" 2>&1 &
}

wait_ready() {
    local port dist node dir epmd suffix
    load "$1"
    for _ in $(seq 1 1200); do
        if [[ -s "$dir/n$1/rabbitmq.pid" ]] && amqp_ready "$port"; then
            cp "$dir/n$1/rabbitmq.pid" "$base/n$1.pid"
            return 0
        fi
        sleep 0.1
    done
    [[ -s "$dir/n$1/rabbitmq.pid" ]] && cp "$dir/n$1/rabbitmq.pid" "$base/n$1.pid"
    tail -n 30 "$dir/n$1/log/console.log" >&2 || true
    return 1
}

# rabbitmqctl against node N, with the cluster's cookie and epmd.
ctl() {
    local port dist node dir epmd suffix n="$1"
    shift
    load "$n"
    as_owner env HOME="$dir/n$n" ERL_EPMD_PORT="$epmd" timeout 60 \
        rabbitmqctl --erlang-cookie "$(cat "$dir/n$n/.erlang.cookie")" -n "$node" "$@"
}

halt() {
    up "$1" || return 1
    local pid
    pid="$(pid_of "$1")"
    kill "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "rabbitmq-cluster.sh: stopped node $1 (pid $pid)"
}

stop_node() {
    [[ "${1:-}" =~ ^[1-3]$ ]] || die "usage: $0 stop-node 1|2|3"
    halt "$1" || echo "rabbitmq-cluster.sh: node $1 was not running"
}

start_node() {
    [[ "${1:-}" =~ ^[1-3]$ ]] || die "usage: $0 start-node 1|2|3"
    up "$1" && { echo "rabbitmq-cluster.sh: node $1 is running"; return 0; }
    launch "$1"
    wait_ready "$1" || die "node $1 did not start again"
    echo "rabbitmq-cluster.sh: started node $1 again"
}

# The number of the node leading quorum queue $1, asked of the first node that answers.
leader() {
    local i line node
    [[ -n "${1:-}" ]] || die "usage: $0 leader QUEUE"
    for i in $(seq 1 "$NODES"); do
        up "$i" || continue
        line="$(ctl "$i" list_queues -q name leader 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }')" || continue
        for node in $(seq 1 "$NODES"); do
            [[ "$line" == "pigeon-c$node-"* ]] && { echo "$node"; return 0; }
        done
    done
    die "no running node knows a leader for queue $1"
}

stop() {
    local i epmd=""
    for i in $(seq 1 "$NODES"); do halt "$i" || true; done
    [[ -f "$base/cluster.vars" ]] && epmd="$(sed -n 's/^epmd=//p' "$base/cluster.vars")"
    if [[ -n "$epmd" ]]; then  # the nodes' own epmd, on its private port; it refuses while it lists a node
        for _ in $(seq 1 50); do
            ERL_EPMD_PORT="$epmd" epmd -names >/dev/null 2>&1 || break
            ERL_EPMD_PORT="$epmd" epmd -kill >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    remove_data
}

remove_data() {
    local dir
    if [[ -f "$base/cluster.vars" ]]; then
        dir="$(sed -n 's/^dir=//p' "$base/cluster.vars")"
        case "$dir" in /tmp/pigeon-rabbitmq-cluster.*) rm -rf "$dir" ;; esac
    fi
    rm -rf "$base" "$envfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    stop-node) stop_node "${2:-}" ;;
    start-node) start_node "${2:-}" ;;
    leader) leader "${2:-}" ;;
    *) echo "usage: $0 start|stop|stop-node N|start-node N|leader QUEUE" >&2; exit 2 ;;
esac
