#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL server for pigeon's tests.
#
#   scripts/servers/postgres.sh start   # idempotent; writes .servers/postgres.env
#   scripts/servers/postgres.sh stop    # stops the server it started and removes its data
#   scripts/servers/postgres.sh restart [fast|immediate]   # pg_ctl restart, data kept
#
# PIGEON_SERVERS_DIR puts the state somewhere else than .servers/ (the fault suite runs
# a server of its own there, to restart it); PIGEON_PG_DURABLE=1 keeps fsync and
# synchronous_commit on, as a server that must not lose a commit runs.
#
# The cluster lives under .servers/postgres/ in the repository (under /tmp, owned by the
# postgres user, when run as root: PostgreSQL refuses to run as root and may not be able to
# reach the repository), listens on 127.0.0.1 only, on a free port, with trust
# authentication and fsync off: fast, and for tests only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${PIGEON_SERVERS_DIR:-$ROOT/.servers}"
DIR="$STATE/postgres"
DATA_LINK="$DIR/datadir"  # where the data directory is, when it is not "$DIR/data"
ENV_FILE="$STATE/postgres.env"
PID_FILE="$STATE/postgres.pid"
DB=pigeon_test

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bindir() {
    local candidate
    if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/pg_ctl" ]]; then echo "$PG_BINDIR"; return 0; fi
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$candidate/pg_ctl" ]] && { echo "$candidate"; return 0; }
    done
    if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return 0; fi
    return 1
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is unavailable; install PostgreSQL (initdb, pg_ctl) or set PG_BINDIR"
    echo "postgres.sh: PostgreSQL not found; installing it with apt-get" >&2
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -q >&2 || die "apt-get update failed; install PostgreSQL by hand or set PG_BINDIR"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q postgresql >&2 \
        || die "apt-get install postgresql failed; install PostgreSQL by hand or set PG_BINDIR"
}

# Run a command as the user that owns the cluster: PostgreSQL refuses to run as root.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

data_dir() {
    if [[ -f "$DATA_LINK" ]]; then cat "$DATA_LINK"; else echo "$DIR/data"; fi
}

# The server's own postmaster.pid is the truth (a `pg_ctl restart` changes the pid);
# the copy in .servers/postgres.pid is refreshed from it.
running() {
    local pid data
    data="$(data_dir)"
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(head -1 "$data/postmaster.pid" 2>/dev/null || cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid" >"$PID_FILE"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if running; then
        if [[ -f "$ENV_FILE" ]]; then
            echo "postgres.sh: already running (pid $(cat "$PID_FILE")); $(cat "$ENV_FILE")"
            return 0
        fi
        stop  # ours, but its URL is lost: start afresh rather than guess
    fi
    local bindir port
    bindir="$(find_bindir)" || { install_postgres; bindir="$(find_bindir)" || die "PostgreSQL installed but pg_ctl not found"; }
    remove_data
    mkdir -p "$DIR"
    local DATA="$DIR/data" LOG
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
        DATA="$(mktemp -d /tmp/pigeon-postgres.XXXXXX)/data"
        chown postgres: "$(dirname "$DATA")"
        echo "$DATA" >"$DATA_LINK"
    fi
    as_owner "$bindir/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    LOG="$(dirname "$DATA")/server.log"
    port="$(free_port)"
    local durable=off
    [[ "${PIGEON_PG_DURABLE:-}" == 1 ]] && durable=on
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
fsync = $durable
synchronous_commit = $durable
full_page_writes = $durable
max_connections = 200
# What docs/performance.md recommends for busy queues: autovacuum looks at each table every
# 10 s rather than every minute, so a churning jobs table is vacuumed while it churns.
autovacuum_naptime = 10s
CONF
    as_owner "$bindir/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
        || { cat "$LOG" >&2; die "the server did not start"; }
    local tries=0
    until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; do
        tries=$((tries + 1)); [[ $tries -lt 100 ]] || die "the server is not ready after 10 s"
        sleep 0.1
    done
    as_owner head -1 "$DATA/postmaster.pid" >"$PID_FILE"
    "$bindir/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
    echo "PIGEON_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/$DB" >"$ENV_FILE"
    echo "postgres.sh: started (pid $(cat "$PID_FILE")); $(cat "$ENV_FILE")"
}

stop() {
    if [[ -f "$PID_FILE" ]] && running; then
        local bindir
        bindir="$(find_bindir)" || die "pg_ctl not found"
        as_owner "$bindir/pg_ctl" -D "$(data_dir)" -m fast -w stop >/dev/null || kill "$(cat "$PID_FILE")"
        echo "postgres.sh: stopped"
    else
        echo "postgres.sh: not running"
    fi
    remove_data
}

restart() {
    running || die "not running"
    local bindir
    bindir="$(find_bindir)" || die "pg_ctl not found"
    as_owner "$bindir/pg_ctl" -D "$(data_dir)" -l "$(dirname "$(data_dir)")/server.log" -m "${1:-fast}" -w -t 60 restart >/dev/null \
        || die "the server did not restart"
    as_owner head -1 "$(data_dir)/postmaster.pid" >"$PID_FILE"
    echo "postgres.sh: restarted (pid $(cat "$PID_FILE"), mode ${1:-fast})"
}

remove_data() {
    local data
    data="$(data_dir)"
    case "$data" in /tmp/pigeon-postgres.*/data) rm -rf "$(dirname "$data")" ;; esac
    rm -rf "$DIR" "$ENV_FILE" "$PID_FILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) restart "${2:-fast}" ;;
    *) echo "usage: $0 start|stop|restart [fast|immediate]" >&2; exit 2 ;;
esac
