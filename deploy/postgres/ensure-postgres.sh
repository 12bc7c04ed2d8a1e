#!/usr/bin/env bash
# Makes a private PostgreSQL server available for the tests and prints its URL: that one line
# is all that goes to stdout, everything else to stderr. Installs Debian's server package when
# it is missing (needs root); re-running reuses the cluster, and the server when it runs.
#
#   HUB_PG_PORT  port on 127.0.0.1 (default 54329)
#   HUB_PG_DATA  cluster directory (default /var/tmp/aftersales-hub-pg), without spaces;
#                the postgres user must be able to reach it
set -euo pipefail

PORT="${HUB_PG_PORT:-54329}"
DATA="${HUB_PG_DATA:-/var/tmp/aftersales-hub-pg}"
DATABASE="hub_test"
URL="postgresql://postgres@127.0.0.1:${PORT}/${DATABASE}"

# Keep stdout for the URL alone: every command below writes to stderr.
exec 3>&1 1>&2
log() { echo "ensure-postgres: $*"; }
die() { log "$*"; exit 1; }

# Two runs at once (make and pytest, two shells) would race on apt, initdb and CREATE DATABASE.
exec 9>"${DATA%/}.lock"
flock 9

server_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

install_server() {
  [ "$(id -u)" -eq 0 ] || die "no PostgreSQL server binaries, and installing them needs root"
  log "installing PostgreSQL from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package from starting the distribution's own cluster (we run a private one):
  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d, and 101 means "do not start".
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=1
  fi
  local status=0
  {
    apt-get update -qq &&
      apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 postgresql
  } || status=$?
  if [ -n "$added_policy" ]; then rm -f "$policy"; fi
  [ "$status" -eq 0 ] || die "apt-get failed (exit $status)"
}

BIN="$(server_bin)" || { install_server; BIN="$(server_bin)" || die "no server after install"; }

if [ "$(id -u)" -eq 0 ]; then
  OWNER=postgres
  # PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
  as_owner() { runuser -u postgres -- "$@"; }
else
  OWNER="$(id -un)"
  as_owner() { "$@"; }
fi

if [ ! -s "$DATA/PG_VERSION" ]; then
  log "creating a cluster in $DATA"
  mkdir -p "$DATA"
  chown "$OWNER" "$DATA"
  chmod 700 "$DATA"
  # Trust: the server listens on 127.0.0.1 only and holds throw-away test data.
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi

# Settings go on the command line at each start, so a cluster made by an older version of this
# script starts the same way; the socket lives in $DATA since /run/postgresql may not exist.
if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  running_port="$(sed -n 4p "$DATA/postmaster.pid")"
  [ "$running_port" = "$PORT" ] ||
    die "the cluster in $DATA already runs on port $running_port, not $PORT" \
      "(stop it: runuser -u $OWNER -- $BIN/pg_ctl -D $DATA stop)"
else
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  (
    # The server outlives this script: it must not inherit our lock, the caller's stdout
    # (a caller reading it to the end would wait forever) or any other descriptor.
    for fd in $(ls /proc/$BASHPID/fd); do
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DATA" start
  ) >/dev/null || { tail -n 20 "$DATA/server.log" || true; die "the server did not start"; }
fi

psql_admin() { as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -X -q "$@"; }
exists="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")"
if [ "$exists" != 1 ]; then
  log "creating database $DATABASE"
  psql_admin -c "CREATE DATABASE $DATABASE"
fi

echo "$URL" >&3
