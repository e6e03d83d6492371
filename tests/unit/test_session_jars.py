import dataclasses
import time
from types import MappingProxyType

import pytest
from structlog.testing import capture_logs

from chillflow import session
from chillflow.errors import DependencyError
from chillflow.settings import SparkSettings

PACKAGES = ("io.delta:delta-spark_4.2_2.13:4.4.0", "org.postgresql:postgresql:42.7.8")


@pytest.fixture
def spark_settings(tmp_path):
    return SparkSettings(
        master="local[1]",
        app_name="t",
        conf=MappingProxyType({}),
        packages=PACKAGES,
        jars_dir=None,
        ivy_dir=tmp_path / "ivy",
    )


def test_jars_dir_without_delta_names_what_is_missing(spark_settings, tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "postgresql-42.7.8.jar").write_bytes(b"")

    with pytest.raises(DependencyError, match="lacks the jars delta-spark, delta-storage"):
        session._jar_config(dataclasses.replace(spark_settings, jars_dir=jars))


def test_jars_dir_with_all_jars_is_used_as_is(spark_settings, tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("delta-spark_4.2_2.13-4.4.0.jar", "delta-storage-4.4.0.jar", "postgresql.jar"):
        (jars / name).write_bytes(b"")

    conf, _ = session._jar_config(dataclasses.replace(spark_settings, jars_dir=jars))

    assert conf["spark.jars"].split(",") == sorted(str(p) for p in jars.glob("*.jar"))


def test_pinned_manifest_avoids_resolution(spark_settings, tmp_path):
    jar = tmp_path / "delta.jar"
    jar.write_bytes(b"")
    manifest = session._manifest_path(spark_settings)
    manifest.parent.mkdir(parents=True)
    manifest.write_text(f"{jar}\n")

    conf, _ = session._jar_config(spark_settings)

    assert conf == {"spark.jars": str(jar)}


def test_unreachable_maven_fails_within_seconds(spark_settings, monkeypatch):
    monkeypatch.setattr(session, "_MAVEN_CENTRAL", "http://127.0.0.1:9")  # discard port: closed
    started = time.monotonic()

    with pytest.raises(DependencyError, match="Maven Central unreachable.*CHILLFLOW_JARS_DIR"):
        session._jar_config(spark_settings)

    assert time.monotonic() - started < 10


def test_the_session_time_zone_is_forced_to_utc(spark, base_settings):
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        with capture_logs() as logs:
            session_ = session.build_spark(base_settings.spark)
    finally:
        zone = spark.conf.get("spark.sql.session.timeZone")
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    assert session_ is spark
    assert zone == "UTC"
    assert {
        "event": "session.time_zone_overridden",
        "inherited": "America/New_York",
        "forced": "UTC",
        "log_level": "warning",
    } in logs
