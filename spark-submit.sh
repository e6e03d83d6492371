#!/usr/bin/env bash
# Submit a ChillFlow job with spark-submit, locally or to a cluster.
#
#   ./spark-submit.sh [--dry-run] JOB [job arguments]
#
# JOB is curate | process-trips | aggregate, or a path to a script under jobs/.
# Environment: SPARK_MASTER (default local[*]; spark://…, k8s://…, yarn), SPARK_DEPLOY_MODE
# (client), DRIVER_MEMORY (4g), EXECUTOR_MEMORY (2g), EXECUTOR_CORES (1), NUM_EXECUTORS,
# CHILLFLOW_JARS_DIR (jars from a local directory instead of Maven Central), PYTHON (the
# virtualenv's python, also used on executors), SPARK_SUBMIT_EXTRA (extra spark-submit options).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || python=$(command -v python3)

dry_run=false
if [[ ${1:-} == --dry-run ]]; then dry_run=true; shift; fi
if [[ $# -lt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
job=$1; shift
case $job in
  curate) script=$root/jobs/curate.py ;;
  process-trips) script=$root/jobs/process_trips.py ;;
  aggregate) script=$root/jobs/aggregate.py ;;
  *) script=$job ;;
esac
[[ -f $script ]] || { echo "spark-submit.sh: no job script $script" >&2; exit 2; }

master=${SPARK_MASTER:-local[*]}
spark_submit=$("$python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')

# The package travels to executors as a zip (the driver imports it from the same zip).
dist=$root/.chillflow/dist
mkdir -p "$dist"
package=$dist/chillflow.zip
if [[ ! -f $package ]] || [[ -n $(find "$root/chillflow" -name '*.py' -newer "$package" -print -quit) ]]; then
  rm -f "$package"
  (cd "$root" && "$python" -c 'import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("chillflow").rglob("*.py")):
        z.write(p)' "$package")
fi

# Delta + PostgreSQL JDBC jars: resolved once by Spark's Ivy and pinned, or from CHILLFLOW_JARS_DIR.
jars=$("$python" -m chillflow jars path --sep , 2>/dev/null) || {
  echo "spark-submit.sh: cannot get the Delta/JDBC jars; run '$python -m chillflow jars path' to see why" >&2
  exit 8
}

cmd=("$spark_submit"
  --master "$master"
  --deploy-mode "${SPARK_DEPLOY_MODE:-client}"
  --name "chillflow-$(basename "$script" .py)"
  --driver-memory "${DRIVER_MEMORY:-4g}"
  --executor-memory "${EXECUTOR_MEMORY:-2g}"
  --executor-cores "${EXECUTOR_CORES:-1}"
  --jars "$jars"
  --py-files "$package"
  --files "$root/conf/chillflow.toml,$root/conf/quality_rules.toml,$root/conf/log4j2.properties"
  --driver-java-options "-Dlog4j2.configurationFile=$root/conf/log4j2.properties"
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
  --conf "spark.pyspark.python=$python"
  --conf "spark.pyspark.driver.python=$python")
[[ -n ${NUM_EXECUTORS:-} ]] && cmd+=(--num-executors "$NUM_EXECUTORS")
# shellcheck disable=SC2206
[[ -n ${SPARK_SUBMIT_EXTRA:-} ]] && cmd+=($SPARK_SUBMIT_EXTRA)
cmd+=("$script" "$@")

if $dry_run; then
  printf '%q ' "${cmd[@]}"; printf '\n'
  exit 0
fi
export CHILLFLOW_CONF_DIR=${CHILLFLOW_CONF_DIR:-$root/conf}
export PYSPARK_PYTHON=$python
exec "${cmd[@]}"
