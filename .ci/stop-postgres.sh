#!/usr/bin/env bash
# Stop a CI PostgreSQL started by .ci/start-postgres.sh and delete its directory.
#
# Which one: the directory given as $1, else $CHILLFLOW_PG_DIR, else the chillflow-pg.* temp
# directory whose port matches $DATABASE_URL. Finding none is not an error (DATABASE_URL may name
# a server this script did not start).
set -euo pipefail

dir=${1:-${CHILLFLOW_PG_DIR:-}}
if [[ -z $dir ]]; then
  port=$(sed -n 's|^postgresql://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"${DATABASE_URL:-}")
  for candidate in "${TMPDIR:-/tmp}"/chillflow-pg.*; do
    if [[ -n $port && -f $candidate/port && $(<"$candidate/port") == "$port" ]]; then
      dir=$candidate
      break
    fi
  done
fi

if [[ -z $dir || ! -f $dir/stop.sh ]]; then
  echo "stop-postgres: no PostgreSQL started by .ci/start-postgres.sh found; nothing to stop" >&2
  exit 0
fi
echo "stop-postgres: stopping the server in $dir" >&2
bash "$dir/stop.sh"
