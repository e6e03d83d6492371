#!/usr/bin/env bash
# Submit a ChillFlow job with spark-submit, locally or to a cluster.
#
#   ./spark-submit.sh [--dry-run] JOB [job arguments]
#
# JOB is pipeline | curate | process-trips | aggregate (any jobs/NAME.py, '-' or '_'), or a script path.
# --dry-run prints the exact command, environment included, instead of running it (with the
# values of secret-looking settings and URL passwords shown as ***).
#
# Environment (all optional):
#   SPARK_MASTER          local[*] (default), spark://HOST:7077, k8s://https://HOST:PORT, yarn
#   SPARK_DEPLOY_MODE     client (default); cluster on k8s and yarn
#   DRIVER_MEMORY (4g), DRIVER_CORES, EXECUTOR_MEMORY (2g), EXECUTOR_CORES (1),
#   NUM_EXECUTORS (k8s, yarn), TOTAL_EXECUTOR_CORES (spark://), SHUFFLE_PARTITIONS
#   CHILLFLOW_JARS_MODE   jars: local jar files via --jars (default for local and spark://;
#                         from CHILLFLOW_JARS_DIR or the pinned Ivy cache);
#                         packages: Maven coordinates via --packages (default for k8s and yarn)
#   PYTHON                the driver's Python (default .venv/bin/python)
#   EXECUTOR_PYTHON       the executors' Python (default PYTHON for local and spark://, python3
#                         for k8s and yarn, whose nodes run the image's or the node's Python)
#   CHILLFLOW_CONF_DIR    the conf/ directory to ship (default ./conf of this checkout)
#   CHILLFLOW_IMAGE       container image of driver and executors (k8s)
#   CHILLFLOW_IMAGE_ROOT  where the project lives inside that image (k8s cluster mode)
#   SPARK_SUBMIT_EXTRA    more spark-submit options, split on whitespace
# Exit codes: 2 usage or configuration, 8 missing jars; otherwise the job's own.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "spark-submit.sh: $2" >&2; exit "$1"; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

dry_run=false
if [[ ${1:-} == --dry-run ]]; then dry_run=true; shift; fi
if [[ $# -lt 1 || ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 2; fi
job=$1; shift

python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || python=$(command -v python3) || die 2 "no Python found: set PYTHON"

master=${SPARK_MASTER:-local[*]}
case $master in
  local | local\[*\]) kind=local ;;
  spark://*) kind=standalone ;;
  k8s://*) kind=k8s ;;
  yarn) kind=yarn ;;
  *) die 2 "SPARK_MASTER=$master: expected local[N], spark://HOST:PORT, k8s://URL or yarn" ;;
esac
deploy_mode=${SPARK_DEPLOY_MODE:-client}
case $deploy_mode/$kind in
  client/* | cluster/k8s | cluster/yarn) ;;
  cluster/standalone) die 2 "Spark standalone runs Python drivers in client mode only: unset SPARK_DEPLOY_MODE" ;;
  cluster/*) die 2 "SPARK_DEPLOY_MODE=cluster needs a k8s:// or yarn master, not $master" ;;
  *) die 2 "SPARK_DEPLOY_MODE=$deploy_mode: expected client or cluster" ;;
esac
in_image=false
if [[ $deploy_mode == cluster && $kind == k8s ]]; then
  [[ -n ${CHILLFLOW_IMAGE_ROOT:-} ]] \
    || die 2 "k8s cluster mode runs the driver in a pod: set CHILLFLOW_IMAGE_ROOT to the project's directory in the image (e.g. /opt/chillflow)"
  in_image=true
fi

if [[ $job != */* && -f $root/jobs/${job//-/_}.py ]]; then
  script=$root/jobs/${job//-/_}.py
elif [[ -f $job ]]; then
  script=$(cd "$(dirname "$job")" && pwd)/$(basename "$job")
else
  known=$(find "$root/jobs" -maxdepth 1 -name "*.py" -printf "%f\n" | sort | sed 's/\.py$//; s/_/-/g' | paste -sd ' ' -)
  die 2 "unknown job '$job': expected one of: ${known:-none} (or a script path)"
fi
name=$(basename "$script" .py)

conf_dir=${CHILLFLOW_CONF_DIR:-$root/conf}
[[ -f $conf_dir/chillflow.toml ]] || die 2 "no chillflow.toml in CHILLFLOW_CONF_DIR=$conf_dir"
conf_dir=$(cd "$conf_dir" && pwd)

case ${CHILLFLOW_JARS_MODE:-} in
  jars | packages) jars_mode=$CHILLFLOW_JARS_MODE ;;
  "") if [[ $kind == k8s || $kind == yarn ]]; then jars_mode=packages; else jars_mode=jars; fi ;;
  *) die 2 "CHILLFLOW_JARS_MODE=$CHILLFLOW_JARS_MODE: expected jars or packages" ;;
esac

case $kind in
  local | standalone) executor_python=${EXECUTOR_PYTHON:-$python} ;;
  *) executor_python=${EXECUTOR_PYTHON:-python3} ;;
esac
driver_python=$python
[[ $deploy_mode == cluster ]] && driver_python=$executor_python

spark_submit=$("$python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))') \
  || die 2 "$python cannot import pyspark: set PYTHON to the project's virtualenv"

# The JVM jars: pinned local files, or Maven coordinates that each cluster node resolves itself.
chillflow() { CHILLFLOW_CONF_DIR=$conf_dir "$python" -m chillflow "$@"; }
errors=$(mktemp)
if [[ $jars_mode == jars ]]; then
  jars=$(chillflow jars path --sep , 2>"$errors") || {
    tail -n 5 "$errors" >&2; rm -f "$errors"
    die 8 "cannot get the Delta/JDBC jars (see above); set CHILLFLOW_JARS_DIR or CHILLFLOW_JARS_MODE=packages"
  }
  jar_options=(--jars "$jars")
else
  packages=$(chillflow jars packages --sep , 2>"$errors") || {
    tail -n 5 "$errors" >&2; rm -f "$errors"; die 2 "cannot read the packages from $conf_dir"
  }
  jar_options=(--packages "$packages")
fi
rm -f "$errors"

opts=(--master "$master"
  --deploy-mode "$deploy_mode"
  --name "chillflow-${name//_/-}"
  --driver-memory "${DRIVER_MEMORY:-4g}"
  "${jar_options[@]}"
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
  --conf "spark.pyspark.python=$executor_python"
  --conf "spark.pyspark.driver.python=$driver_python")
[[ -n ${DRIVER_CORES:-} ]] && opts+=(--driver-cores "$DRIVER_CORES")
if [[ $kind != local ]]; then
  opts+=(--executor-memory "${EXECUTOR_MEMORY:-2g}" --executor-cores "${EXECUTOR_CORES:-1}")
  [[ -n ${NUM_EXECUTORS:-} ]] && opts+=(--num-executors "$NUM_EXECUTORS")
  [[ -n ${TOTAL_EXECUTOR_CORES:-} ]] && opts+=(--total-executor-cores "$TOTAL_EXECUTOR_CORES")
fi
[[ -n ${SHUFFLE_PARTITIONS:-} ]] && opts+=(--conf "spark.sql.shuffle.partitions=$SHUFFLE_PARTITIONS")
if [[ $kind == k8s ]]; then
  [[ -n ${CHILLFLOW_IMAGE:-} ]] && opts+=(--conf "spark.kubernetes.container.image=$CHILLFLOW_IMAGE")
  # Ivy needs a writable home; the image's user may have none.
  [[ $jars_mode == packages ]] && opts+=(--conf spark.jars.ivy=/tmp/.ivy2)
fi

# The driver's JVM options are the conf's spark.driver.extraJavaOptions (the GC and JIT flags,
# explained in conf/chillflow.toml): spark-submit starts the driver JVM before any session could
# apply them.
jvm=$("$python" -c 'import sys, tomllib
with open(sys.argv[1], "rb") as conf:
    spark_conf = tomllib.load(conf).get("spark", {}).get("conf", {})
print(spark_conf.get("spark.driver.extraJavaOptions", ""))' "$conf_dir/chillflow.toml") \
  || die 2 "cannot read spark.driver.extraJavaOptions from $conf_dir/chillflow.toml"
if $in_image; then
  # The project is installed in the image: nothing to upload, every path is local:// to the pod.
  opts+=(--conf "spark.kubernetes.driverEnv.CHILLFLOW_CONF_DIR=$CHILLFLOW_IMAGE_ROOT/conf"
    --driver-java-options "$jvm -Dlog4j2.configurationFile=$CHILLFLOW_IMAGE_ROOT/conf/log4j2.properties")
  app=("local://$CHILLFLOW_IMAGE_ROOT/jobs/$name.py" "$@")
else
  # The package travels as a zip on --py-files (the driver imports the same zip). It is rebuilt
  # when a module changed and replaced by rename, so concurrent submissions never read half a zip.
  dist=$root/.chillflow/dist
  package=$dist/chillflow.zip
  if [[ ! -f $package ]] || [[ -n $(find "$root/chillflow" -name '*.py' -newer "$package" -print -quit) ]]; then
    mkdir -p "$dist"
    partial=$(mktemp "$dist/chillflow.zip.XXXXXX")
    (cd "$root" && "$python" -c 'import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("chillflow").rglob("*.py")):
        z.write(p)' "$partial")
    mv -f "$partial" "$package"
  fi
  # conf/ goes with the job: the driver reads it in place in client mode and from its working
  # directory in YARN cluster mode; executors never read it.
  files=$(find "$conf_dir" -maxdepth 1 -type f ! -name '.*' | sort | paste -sd , -)
  opts+=(--py-files "$package" --files "$files")
  if [[ $deploy_mode == cluster ]]; then
    opts+=(--conf spark.yarn.appMasterEnv.CHILLFLOW_CONF_DIR=.
      --conf "spark.yarn.appMasterEnv.PYSPARK_PYTHON=$executor_python"
      --driver-java-options "$jvm -Dlog4j2.configurationFile=log4j2.properties")
  else
    opts+=(--driver-java-options "$jvm -Dlog4j2.configurationFile=$conf_dir/log4j2.properties")
  fi
  app=("$script" "$@")
fi
extra=()
[[ -n ${SPARK_SUBMIT_EXTRA:-} ]] && read -r -a extra <<<"$SPARK_SUBMIT_EXTRA"
cmd=("$spark_submit" "${opts[@]}" "${extra[@]}" "${app[@]}")

# The driver's Python hands PYSPARK_PYTHON to the executors with every Python function.
environment=(CHILLFLOW_CONF_DIR="$conf_dir" PYSPARK_PYTHON="$executor_python"
  PYSPARK_DRIVER_PYTHON="$driver_python")
# Local mode needs no routable address (and Spark warns when the hostname is loopback).
[[ $kind == local ]] && environment+=(SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}")
if $dry_run; then
  # Shell-quoted only where needed, so the printed line pastes back into a shell. Secrets are
  # masked: the keys of spark.redaction.regex (conf/chillflow.toml) and passwords in URLs.
  secret_key='^([^=]*(secret|password|token|access[._]?key|salt|database_url)[^=]*)='
  url_password='^(.*://[^/@:]+:)[^/@]*(@.*)$'
  shopt -s nocasematch
  words=()
  for word in "${environment[@]}" "${cmd[@]}"; do
    [[ $word =~ $url_password ]] && word="${BASH_REMATCH[1]}***${BASH_REMATCH[2]}"
    [[ $word =~ $secret_key ]] && word="${BASH_REMATCH[1]}=***"
    if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then words+=("$word"); else words+=("$(printf '%q' "$word")"); fi
  done
  echo "${words[*]}"
  exit 0
fi
export "${environment[@]}"
exec "${cmd[@]}"
