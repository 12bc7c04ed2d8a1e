#!/usr/bin/env bash
# Makes a private PostgreSQL server available for the tests and prints its URL (only that, on
# stdout). Installs Debian's server package when missing; re-running reuses the running server.
set -euo pipefail

PORT="${HUB_PG_PORT:-54329}"
DATA="${HUB_PG_DATA:-/var/tmp/aftersales-hub-pg}"
DATABASE="hub_test"
log() { echo "ensure-postgres: $*" >&2; }

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(bin_dir)" ] || [ ! -x "$(bin_dir)/initdb" ]; then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # The package starts a cluster of its own on 5432; ours is separate and on $PORT.
  apt-get install -y -qq postgresql >&2
fi
BIN="$(bin_dir)"
as_postgres() { runuser -u postgres -- "$@"; }

if [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a cluster in $DATA"
  mkdir -p "$DATA"
  chown postgres:postgres "$DATA"
  as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2
fi
if ! as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DATA -c fsync=on" \
    start >&2
fi
if ! as_postgres psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" | grep -q 1; then
  as_postgres psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE $DATABASE" >&2
fi
echo "postgresql://postgres@127.0.0.1:$PORT/$DATABASE"
