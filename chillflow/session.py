"""The one SparkSession builder: Delta, UTC, and jars (submitted, a directory, or Ivy, pinned)."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import structlog
from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from chillflow.errors import DependencyError
from chillflow.settings import SparkSettings

log = structlog.get_logger(__name__)

_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
_MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
_REQUIRED_JARS = ("delta-spark", "delta-storage", "postgresql")
_TIME_ZONE = "spark.sql.session.timeZone"
_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def build_spark(settings: SparkSettings, *, app_name: str | None = None) -> SparkSession:
    """Return the process's SparkSession (Delta enabled, UTC), creating it on first call.

    Raises:
        DependencyError: If the Delta or PostgreSQL jars cannot be found or downloaded.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return _in_utc(active)
    inherited = _submitted_conf()
    if settings.master.startswith("local"):
        # Local mode needs no routable address; this also silences Spark's hostname warning.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers need this interpreter's packages, not the first `python3` on PATH's.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    options = {
        "spark.master": settings.master,
        "spark.app.name": settings.app_name,
        **settings.conf,
        **_DELTA_CONF,
    }
    if settings.log4j_config is not None and settings.log4j_config.is_file():
        log4j = f"-Dlog4j2.configurationFile={settings.log4j_config}"
        options[_JAVA_OPTIONS] = f"{options.get(_JAVA_OPTIONS, '')} {log4j}".strip()
    submitted_jars = inherited.get("spark.jars", "") + inherited.get("spark.jars.packages", "")
    jars, manifest = ({}, None) if "delta-spark" in submitted_jars else _jar_config(settings)
    # What spark-submit set (--master, --name chillflow-curate, --conf) wins over the defaults.
    options = {k: v for k, v in {**options, **jars}.items() if not inherited.contains(k)}
    if app_name is not None:
        options["spark.app.name"] = app_name  # also over spark-submit's --name
    spark = _in_utc(SparkSession.builder.config(map=options).getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    if manifest is not None and not manifest.exists():
        _write_manifest(spark, manifest)
    return spark


def _in_utc(spark: SparkSession) -> SparkSession:
    """Force UTC: another session time zone would shift the wall-clock month bounds and hours."""
    inherited = spark.conf.get(_TIME_ZONE)
    if inherited != "UTC":
        spark.conf.set(_TIME_ZONE, "UTC")
        log.warning("session.time_zone_overridden", inherited=inherited, forced="UTC")
    return spark


def _submitted_conf() -> SparkConf:
    """Return the settings spark-submit gave this driver (empty when Python started Spark)."""
    # Under spark-submit, a SparkConf made before connecting to the JVM would be empty.
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        SparkContext._ensure_initialized()
    return SparkConf()


def jar_paths(settings: SparkSettings) -> list[Path]:
    """Return the local jar files of the configured packages (for ``--jars``), resolving them."""
    jars, manifest = _jar_config(settings)
    if "spark.jars" in jars:
        return [Path(p) for p in jars["spark.jars"].split(",")]
    spark = build_spark(settings, app_name="chillflow-jars")
    paths = _write_manifest(spark, manifest)
    spark.stop()
    return paths


def _jar_config(settings: SparkSettings) -> tuple[dict[str, str], Path]:
    manifest = _manifest_path(settings)
    if settings.jars_dir is not None:
        return {"spark.jars": ",".join(str(p) for p in _jars_in_dir(settings.jars_dir))}, manifest
    if manifest.exists():
        pinned = [Path(line) for line in manifest.read_text().split() if line]
        if pinned and all(p.is_file() for p in pinned):
            return {"spark.jars": ",".join(str(p) for p in pinned)}, manifest
    _check_maven_reachable(settings.packages)
    return {
        "spark.jars.packages": ",".join(settings.packages),
        "spark.jars.ivy": str(settings.ivy_dir),
    }, manifest


def _manifest_path(settings: SparkSettings) -> Path:
    digest = hashlib.sha256(",".join(sorted(settings.packages)).encode()).hexdigest()[:16]
    return settings.ivy_dir / f"chillflow-jars-{digest}.txt"


def _write_manifest(spark: SparkSession, manifest: Path) -> list[Path]:
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    resolved = [Path(p.removeprefix("file:")) for p in jars.split(",") if p]
    if resolved and all(p.is_file() for p in resolved):
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("\n".join(str(p) for p in resolved) + "\n")
        log.info("jars.pinned", manifest=str(manifest), jars=len(resolved))
    return resolved


def _jars_in_dir(jars_dir: Path) -> list[Path]:
    jars = sorted(jars_dir.glob("*.jar")) if jars_dir.is_dir() else []
    names = " ".join(p.name for p in jars)
    missing = [name for name in _REQUIRED_JARS if name not in names]
    if missing:
        raise DependencyError(
            f"CHILLFLOW_JARS_DIR={jars_dir} lacks the jars {', '.join(missing)} "
            "(and their dependencies): copy them there, e.g. from ~/.ivy2/jars on a machine "
            "that ran `python -m chillflow jars` once, or unset CHILLFLOW_JARS_DIR to download "
            "them from Maven Central"
        )
    return jars


def _check_maven_reachable(packages: tuple[str, ...], timeout_sec: float = 5.0) -> None:
    """Fail in seconds, instead of letting Ivy hang, when Maven Central cannot be reached."""
    if not packages:
        return
    group, artifact, version = packages[0].split(":")
    folder = f"{_MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}"
    url = f"{folder}/{artifact}-{version}.pom"
    try:
        request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - fixed https URL
        with urllib.request.urlopen(request, timeout=timeout_sec):  # noqa: S310
            return
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} for {packages[0]}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = f"Maven Central unreachable ({getattr(exc, 'reason', exc)})"
    raise DependencyError(
        f"cannot download the JVM jars {', '.join(packages)}: {reason}. "
        "Either allow access to Maven Central once (the jars are cached in "
        "~/.ivy2), or set CHILLFLOW_JARS_DIR to a directory holding the jars."
    )
