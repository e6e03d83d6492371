#!/usr/bin/env bash
# Ensure a real PostgreSQL server runs on 127.0.0.1 for CI and print how to reach it.
#
#   eval "$(bash .ci/start-postgres.sh)"    # sets DATABASE_URL
#   ...
#   bash .ci/stop-postgres.sh               # stops it and deletes its directory
#
# stdout carries exactly one line, `export DATABASE_URL=postgresql://chillflow:…@127.0.0.1:PORT/chillflow`;
# everything else goes to stderr. If DATABASE_URL already points at a live server, it is reused.
# Otherwise a fresh cluster is created in a new temp directory (or $CHILLFLOW_PG_DIR, which must not
# exist or be empty), owned by the `postgres` OS user when run as root (initdb refuses root), on
# port $CHILLFLOW_PG_PORT (default 55432, or the next free one). Debian's postgresql package is
# installed with apt-get when no initdb is found. The role `chillflow` owns database `chillflow`
# and may create databases (the tests create one per module). The cluster's directory holds
# stop.sh, server.log and the port.
set -euo pipefail
exec 3>&1 1>&2

log() { printf 'start-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_bindir() {
  local dir candidates=()
  if command -v pg_config >/dev/null 2>&1; then
    candidates+=("$(pg_config --bindir)")
  fi
  while IFS= read -r dir; do
    candidates+=("$dir")
  done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V -r)
  for dir in "${candidates[@]}"; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/pg_isready && -x $dir/psql ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

if [[ -n ${DATABASE_URL:-} ]] && command -v pg_isready >/dev/null 2>&1 \
    && pg_isready -q -d "$DATABASE_URL" -t 5; then
  log "DATABASE_URL already points at a running server; reusing it"
  printf 'export DATABASE_URL=%q\n' "$DATABASE_URL" >&3
  exit 0
fi

if ! bindir=$(find_bindir); then
  [[ $EUID -eq 0 ]] || die "no PostgreSQL server binaries found; run as root or apt-get install postgresql"
  log "no initdb found: installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bindir=$(find_bindir) || die "postgresql is installed but no initdb/pg_ctl was found"
fi
log "using $("$bindir/pg_ctl" --version) from $bindir"

if [[ $EUID -eq 0 ]]; then
  if ! id postgres >/dev/null 2>&1; then
    log "creating OS user postgres"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
  fi
  as_server() { runuser -u postgres -- "$@"; }
  as_server_prefix="runuser -u postgres -- "
else
  as_server() { "$@"; }
  as_server_prefix=""
fi

if [[ -n ${CHILLFLOW_PG_DIR:-} ]]; then
  dir=$CHILLFLOW_PG_DIR
  mkdir -p "$dir"
  [[ -z $(ls -A "$dir") ]] || die "CHILLFLOW_PG_DIR=$dir is not empty"
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/chillflow-pg.XXXXXX")
fi
dir=$(cd "$dir" && pwd -P)
chmod 700 "$dir"
[[ $EUID -ne 0 ]] || chown postgres: "$dir"

started=0
cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    [[ -f $dir/server.log ]] && { log "server log:"; tail -n 30 "$dir/server.log" >&2; }
    [[ $started -eq 0 ]] || as_server "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

port_in_use() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${CHILLFLOW_PG_PORT:-55432}
for _ in $(seq 100); do
  port_in_use "$port" || break
  log "port $port is taken, trying $((port + 1))"
  port=$((port + 1))
done
port_in_use "$port" && die "no free port found"

password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

as_server "$bindir/initdb" --pgdata="$dir/data" --username=postgres --auth-local=trust \
  --auth-host=scram-sha-256 --encoding=UTF8 --no-locale --no-sync >/dev/null
# The Unix socket lives in the 0700 cluster directory, so local trust admits only its owner (and root).
cat >>"$dir/data/postgresql.conf" <<EOF

# Written by .ci/start-postgres.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
EOF

log "starting PostgreSQL in $dir on 127.0.0.1:$port"
started=1
# 3>&-: the server must not inherit the caller's stdout, or `$(bash start-postgres.sh)` never ends.
as_server "$bindir/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
  start >/dev/null 3>&-
for _ in $(seq 60); do
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
"$bindir/pg_isready" -h 127.0.0.1 -p "$port" >&2 || die "server is not ready"

# Through stdin, not the command line, so the password never shows in ps.
as_server "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres <<EOF
CREATE ROLE chillflow LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE chillflow OWNER chillflow;
EOF

printf '%s\n' "$port" >"$dir/port"
cat >"$dir/stop.sh" <<EOF
#!/usr/bin/env bash
# Stop the CI PostgreSQL started by .ci/start-postgres.sh and delete its directory.
set -u
${as_server_prefix}$(printf '%q' "$bindir/pg_ctl") --pgdata=$(printf '%q' "$dir/data") --mode=fast --wait stop >&2
rm -rf $(printf '%q' "$dir")
EOF
chmod +x "$dir/stop.sh"
log "ready; stop with: bash .ci/stop-postgres.sh (or bash $dir/stop.sh)"

printf 'export DATABASE_URL=%s\n' "postgresql://chillflow:$password@127.0.0.1:$port/chillflow" >&3
