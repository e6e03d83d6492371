#!/usr/bin/env bash
# The compose `jobs` service: run one month through the pipeline on the Spark cluster.
#
#   docker compose run --rm jobs                  # MONTH=2025-01, generated if none landed
#   docker compose run --rm -e MONTH=2025-02 jobs
#
# A raw file dropped into the landing volume as yellow_tripdata_YYYY-MM.parquet is used as is;
# otherwise ROWS realistic trips are generated first. The month runs as one `pipeline`
# spark-submit, exactly as the scheduler runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

month=${MONTH:-2025-01}
raw=${LANDING_DIR:-/data/landing}/yellow_tripdata_$month.parquet

if [[ ! -f $raw ]]; then
  echo "run-pipeline: generating ${ROWS:-200000} trips into $raw" >&2
  python - "$raw" "$month" "${ROWS:-200000}" <<'PY'
import sys
from pathlib import Path

from chillflow.generator import generate_month

generate_month(Path(sys.argv[1]), service="yellow", month=sys.argv[2], rows=int(sys.argv[3]))
PY
fi

./spark-submit.sh pipeline "$raw" --month "$month"
