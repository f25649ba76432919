#!/usr/bin/env bash
# A private PostgreSQL for Dockyard's tests and for trying several servers on one database:
# its own data directory, port and socket directory (the distribution's own cluster is left
# alone), listening on 127.0.0.1 only with trust authentication (a test cluster, not a
# production one). Idempotent and quick when it already runs.
#
#   scripts/postgres.sh start   install (if needed), init, start, wait, create role + database
#   scripts/postgres.sh stop
#   scripts/postgres.sh status  exit 0 when it answers
#   scripts/postgres.sh url     the URL of the test database (role may CREATE DATABASE)
set -euo pipefail

PORT=${DOCKYARD_PG_PORT:-55432}
DATA=${DOCKYARD_PG_DATA:-/var/lib/dockyard-pg}
SOCK=${DOCKYARD_PG_SOCKET:-/run/dockyard-pg}
LOGDIR=${DOCKYARD_LOGDIR:-/var/log/dockyard}
ROLE=dockyard_test
URL="postgresql://$ROLE@127.0.0.1:$PORT/$ROLE"

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] && [ -x "$dir/postgres" ] && echo "$dir"
}

answers() {
  local bin
  bin=$(bindir) || return 1
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"
}

as_pg() { runuser -u postgres -- "$@"; }

install() {
  bindir >/dev/null && return 0
  echo "==> installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends postgresql >&2
}

psql_admin() {
  "$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

start() {
  answers || boot
  roles
}

boot() {
  install
  local bin log
  bin=$(bindir)
  mkdir -p "$LOGDIR" "$SOCK" "$DATA"
  chown postgres:postgres "$SOCK" "$DATA"
  chmod 700 "$DATA"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  fi
  log="$LOGDIR/postgres.log"
  touch "$log" && chown postgres:postgres "$log"
  # pg_ctl detaches the postmaster itself; detach (setsid, no open file of ours: a held lock)
  # and the redirections keep it off our pipes.
  "$(dirname "$0")/detach" runuser -u postgres -- "$bin/pg_ctl" -D "$DATA" -l "$log" -w -t 60 start \
    -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" \
    >/dev/null 2>&1 </dev/null || true
  for _ in $(seq 1 120); do answers && break; sleep 0.5; done
  answers || { echo "postgres did not answer; see $log" >&2; exit 1; }
}

roles() {
  psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'" | grep -q 1 \
    || psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB"
  psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname='$ROLE'" | grep -q 1 \
    || psql_admin -c "CREATE DATABASE $ROLE OWNER $ROLE"
  # DROP DATABASE … WITH (FORCE) must also end an autovacuum worker that happens to be in
  # the test database; without this role the drop fails now and then
  psql_admin -tAc "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                   JOIN pg_roles g ON g.oid = m.roleid
                   WHERE r.rolname='$ROLE' AND g.rolname='pg_signal_backend'" | grep -q 1 \
    || psql_admin -c "GRANT pg_signal_backend TO $ROLE" >/dev/null
}

case "${1:-}" in
  start) start ;;
  stop) answers && as_pg "$(bindir)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true ;;
  status) answers ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
