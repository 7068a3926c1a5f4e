#!/usr/bin/env bash
# needs: postgres
# Start or stop a throwaway PgBouncer, in transaction pooling mode, in front of the
# PostgreSQL that scripts/servers/postgres.sh started (scripts/with-servers starts the
# servers a script "needs" first).
#
#   scripts/servers/pgbouncer.sh start   # idempotent; writes .servers/pgbouncer.env
#   scripts/servers/pgbouncer.sh stop    # stops the PgBouncer it started
#
# It listens on 127.0.0.1 only, on a free port, with trust authentication, and keeps
# its files in a temporary directory (owned by the postgres user when run as root:
# PgBouncer refuses to run as root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$ROOT/.servers"
ENV_FILE="$STATE/pgbouncer.env"
PID_FILE="$STATE/pgbouncer.pid"
DIR_FILE="$STATE/pgbouncer.dir"  # where its temporary directory is
PG_ENV="$STATE/postgres.env"

die() { echo "pgbouncer.sh: $*" >&2; exit 1; }

find_pgbouncer() {
    command -v pgbouncer 2>/dev/null && return 0
    [[ -x /usr/sbin/pgbouncer ]] && { echo /usr/sbin/pgbouncer; return 0; }
    return 1
}

install_pgbouncer() {
    command -v apt-get >/dev/null 2>&1 || die "PgBouncer is not installed and apt-get is unavailable; install pgbouncer"
    echo "pgbouncer.sh: PgBouncer not found; installing it with apt-get" >&2
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    # The package's postinst may start the distro's service; this script never uses it.
    "${SUDO[@]}" apt-get update -q >&2 || die "apt-get update failed; install pgbouncer by hand"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q pgbouncer >&2 \
        || die "apt-get install pgbouncer failed; install it by hand"
}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PgBouncer"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if running && [[ -f "$ENV_FILE" ]]; then
        echo "pgbouncer.sh: already running (pid $(cat "$PID_FILE")); $(cat "$ENV_FILE")"
        return 0
    fi
    [[ -f "$PG_ENV" ]] || die "no PostgreSQL to pool: start scripts/servers/postgres.sh first"
    local bin pg_url hostport pg_host pg_port db port dir
    bin="$(find_pgbouncer)" || { install_pgbouncer; bin="$(find_pgbouncer)" || die "PgBouncer installed but not found"; }
    pg_url="$(sed -n 's/^PIGEON_TEST_POSTGRES_URL=//p' "$PG_ENV")"
    hostport="${pg_url#*@}"; hostport="${hostport%%/*}"
    pg_host="${hostport%:*}"; pg_port="${hostport##*:}"
    db="${pg_url##*/}"; db="${db%%\?*}"
    port="$(free_port)"
    dir="$(mktemp -d /tmp/pigeon-pgbouncer.XXXXXX)"
    echo "$dir" >"$DIR_FILE"
    echo '"postgres" ""' >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
$db = host=$pg_host port=$pg_port dbname=$db

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    [[ $(id -u) -eq 0 ]] && chown -R postgres: "$dir"
    as_owner "$bin" -d "$dir/pgbouncer.ini" || { cat "$dir/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
    local tries=0
    until [[ -s "$dir/pgbouncer.pid" ]] && python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
        tries=$((tries + 1)); [[ $tries -lt 100 ]] || die "PgBouncer is not listening after 10 s"
        sleep 0.1
    done
    cp "$dir/pgbouncer.pid" "$PID_FILE"
    echo "PIGEON_TEST_PGBOUNCER_URL=postgresql://postgres@127.0.0.1:$port/$db" >"$ENV_FILE"
    echo "pgbouncer.sh: started (pid $(cat "$PID_FILE")); $(cat "$ENV_FILE")"
}

stop() {
    if running; then
        local pid
        pid="$(cat "$PID_FILE")"
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "pgbouncer.sh: stopped"
    else
        echo "pgbouncer.sh: not running"
    fi
    if [[ -f "$DIR_FILE" ]]; then
        case "$(cat "$DIR_FILE")" in /tmp/pigeon-pgbouncer.*) rm -rf "$(cat "$DIR_FILE")" ;; esac
    fi
    rm -f "$ENV_FILE" "$PID_FILE" "$DIR_FILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
