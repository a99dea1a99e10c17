#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and demos: nothing outside DATADIR is touched
# (besides installing Debian's postgresql package when it is missing).
#
#   tools/postgres.sh [start] DATADIR PORT [DBNAME]   prints postgresql://postgres@127.0.0.1:PORT/DBNAME
#   tools/postgres.sh stop DATADIR
#
# DATADIR must be reachable by the `postgres` user when run as root (e.g. a mktemp -d under /tmp).
#
# Idempotent: starting a running server prints its DSN again; stopping a stopped one is a
# no-op. Trust authentication on 127.0.0.1 only, the unix socket inside DATADIR, so it
# neither needs a password nor collides with a system cluster. initdb refuses to run as
# root, so the server runs as the `postgres` user (created by the Debian package).
set -euo pipefail

usage() {
    echo "usage: $0 [start] DATADIR PORT [DBNAME] | $0 stop DATADIR" >&2
    exit 2
}

pg_bin() {
    # Newest installed major version first.
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        return 1
    fi
    echo "$dir"
}

install_postgres() {
    if pg_bin >/dev/null; then
        return
    fi
    if ! command -v apt-get >/dev/null; then
        echo "PostgreSQL is not installed and apt-get is not available: install PostgreSQL (initdb, pg_ctl) first" >&2
        exit 1
    fi
    echo "installing PostgreSQL with apt-get ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }; then
        echo "apt-get could not install postgresql (no network or not root?)" >&2
        exit 1
    fi
    pg_bin >/dev/null || { echo "postgresql installed, but no /usr/lib/postgresql/*/bin/initdb" >&2; exit 1; }
}

as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

start() {
    local datadir=$1 port=$2 db=${3:-mlops}
    [[ "$port" =~ ^[0-9]+$ ]] || usage
    [[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "database name must be an identifier: $db" >&2; exit 2; }
    install_postgres
    local bin
    bin=$(pg_bin)
    id postgres >/dev/null 2>&1 || { echo "no 'postgres' user to run the server as" >&2; exit 1; }

    mkdir -p "$datadir"
    datadir=$(cd "$datadir" && pwd)
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$datadir"
    fi
    if ! as_postgres test -w "$datadir"; then
        echo "the postgres user cannot reach $datadir: choose a DATADIR under a directory it can enter (e.g. /tmp)" >&2
        exit 1
    fi
    chmod 700 "$datadir"

    if [[ ! -f "$datadir/PG_VERSION" ]]; then
        local log
        log=$(mktemp)
        if ! as_postgres "$bin/initdb" -D "$datadir" -U postgres --auth=trust --encoding=UTF8 --no-sync >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            exit 1
        fi
        rm -f "$log"
        # Local connections only: TCP on 127.0.0.1 and the socket in DATADIR, both trusted.
        cat >"$datadir/pg_hba.conf" <<'EOF'
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
        chown postgres: "$datadir/pg_hba.conf"
    fi

    if ! as_postgres "$bin/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        # Durability is pointless for a throwaway server: fsync off makes bulk loads fast.
        as_postgres "$bin/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 30 \
            -o "-p $port -c listen_addresses=127.0.0.1 -k $datadir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null \
            || { cat "$datadir/server.log" >&2 || true; exit 1; }
    fi
    local ready=0
    for _ in $(seq 1 100); do
        if as_postgres "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then ready=1; break; fi
        sleep 0.1
    done
    [[ $ready == 1 ]] || { echo "PostgreSQL in $datadir is not ready on port $port" >&2; exit 1; }

    if [[ "$(as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
        as_postgres "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
    echo "postgresql://postgres@127.0.0.1:$port/$db"
}

stop() {
    local datadir=$1
    [[ -f "$datadir/PG_VERSION" ]] || return 0
    local bin
    bin=$(pg_bin) || return 0
    if as_postgres "$bin/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        as_postgres "$bin/pg_ctl" -D "$datadir" -m fast -w -t 30 stop >/dev/null
    fi
}

case "${1:-}" in
    start) [[ $# -ge 3 && $# -le 4 ]] || usage; start "${@:2}" ;;
    -h | --help | "") usage ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    *) [[ $# -ge 2 && $# -le 3 ]] || usage; start "$@" ;;  # DATADIR PORT [DBNAME]
esac
