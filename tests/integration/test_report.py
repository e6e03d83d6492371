"""``chillflow report``'s figures against direct Spark and SQL counts of the tables they show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from chillflow.database_url import parse_database_url
from chillflow.errors import ConfigError
from chillflow.report import write_report
from chillflow.report.figures import collect_figures
from chillflow.storage.delta import read_table
from chillflow.storage.postgres import connect
from tests.conftest import REPO_ROOT
from tests.integration.conftest import REPORT_MONTHS

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def figures(spark, report_lake):
    return collect_figures(spark, report_lake, report_lake.database_url)


def per_slice(frame, column):
    """{(month, rule): rows} for the rule names in ``column`` (an array), and rows per month."""
    exploded = frame.select("month", F.explode(column).alias("rule")).groupBy("month", "rule")
    by_rule = {(r["month"], r["rule"]): r["count"] for r in exploded.count().collect()}
    return by_rule, {r["month"]: r["count"] for r in frame.groupBy("month").count().collect()}


def test_quality_figures_equal_the_tables(spark, report_lake, figures):
    tables = report_lake.tables
    curated = read_table(spark, tables.curated)
    quarantine = read_table(spark, tables.quarantine)
    warned, curated_rows = per_slice(curated, "dq_warnings")
    rejected, quarantined_rows = per_slice(quarantine, "failed_rules")

    assert figures["months"] == sorted(REPORT_MONTHS)
    assert [(q["service"], q["month"]) for q in figures["quality"]] == [
        ("yellow", month) for month in sorted(REPORT_MONTHS)
    ]
    for q in figures["quality"]:
        month = q["month"]
        assert q["rows_in"] == REPORT_MONTHS[month]
        assert (q["curated"], q["quarantined"]) == (curated_rows[month], quarantined_rows[month])
        assert q["curated"] + q["quarantined"] == q["rows_in"]
        assert q["retention_pct"] == pytest.approx(100 * curated_rows[month] / q["rows_in"])
        assert [r["rule"] for r in q["rules"]] == [rule.name for rule in report_lake.curate.rules]
        for rule in q["rules"]:
            failed = rejected.get((month, rule["rule"]), 0) + warned.get((month, rule["rule"]), 0)
            assert rule["failed"] == failed, rule["rule"]
            assert rule["failure_rate"] == pytest.approx(failed / q["rows_in"])
        assert sum(r["failed"] for r in q["rules"] if r["action"] != "warn") >= q["quarantined"] > 0


def test_examples_are_the_first_quarantined_rows_of_each_rule(spark, report_lake, figures):
    quarantine = read_table(spark, report_lake.tables.quarantine)
    for q in figures["quality"]:
        shown = {}
        for example in q["examples"]:
            assert example["rule"] in example["failed_rules"]
            shown.setdefault(example["rule"], []).append(example["source_row"])
        expected = {}
        for rule in (r for r in q["rules"] if r["action"] != "warn" and r["failed"]):
            rows = quarantine.where(
                (F.col("month") == q["month"]) & F.array_contains("failed_rules", rule["rule"])
            )
            first = rows.orderBy("source_row").limit(3).select("source_row").collect()
            expected[rule["rule"]] = [row["source_row"] for row in first]
        assert shown == expected


def test_kpi_figures_equal_the_curated_trips(spark, report_lake, figures):
    [kpi] = figures["kpis"]  # the KPI table's latest month
    trips = read_table(spark, report_lake.tables.curated).where(F.col("month") == "2025-01")
    day = F.dayofmonth("pickup_ts").alias("day")
    cells = trips.groupBy(day, F.hour("pickup_ts").alias("hour")).count().collect()
    daily = {
        r["day"]: r
        for r in trips.groupBy(day)
        .agg(
            F.count(F.lit(1)).alias("trips"),
            F.sum("total_amount").alias("revenue"),
            *[F.avg(c).alias(c) for c in ("fare_amount", "tip_amount", "avg_speed_kmh")],
        )
        .collect()
    }
    zones = trips.groupBy("pu_zone_id").count().orderBy(F.desc("count"), "pu_zone_id").limit(10)

    assert kpi["month"] == "2025-01"
    assert kpi["trips"] == trips.count() == sum(map(sum, kpi["by_day_hour"]))
    assert kpi["revenue"] == pytest.approx(trips.agg(F.sum("total_amount")).first()[0], abs=0.01)
    expected_cells = [[0] * 24 for _ in range(31)]
    for cell in cells:
        expected_cells[cell["day"] - 1][cell["hour"]] = cell["count"]
    assert kpi["by_day_hour"] == expected_cells
    assert [d["day"] for d in kpi["daily"]] == sorted(daily)
    for d in kpi["daily"]:
        direct = daily[d["day"]]
        assert d["trips"] == direct["trips"]
        assert d["revenue"] == pytest.approx(direct["revenue"], abs=0.011)
        assert d["avg_fare"] == pytest.approx(direct["fare_amount"], abs=0.011)
        assert d["avg_tip"] == pytest.approx(direct["tip_amount"], abs=0.011)
        assert d["avg_speed_kmh"] == pytest.approx(direct["avg_speed_kmh"], abs=0.011)
    assert [(z["zone_id"], z["trips"]) for z in kpi["top_zones"]] == [
        (r["pu_zone_id"], r["count"]) for r in zones.collect()
    ]
    for zone in kpi["top_zones"]:
        assert (zone["zone"], zone["borough"]) == (
            f"Zone {zone['zone_id']} <&>",
            f"Borough {zone['zone_id'] % 4}",
        )
    assert figures["zones_loaded"] is True


def test_runs_and_tables_equal_the_ledger_and_the_delta_logs(spark, report_lake, figures):
    with connect(report_lake.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT job, run_id, status, error FROM ops.job_run ORDER BY job, id DESC")
        ledger = cur.fetchall()

    assert [(r["job"], r["run_id"], r["status"], r["error"]) for r in figures["runs"]] == ledger
    failed = next(r for r in figures["runs"] if r["run_id"] == "failed01")
    assert (failed["started_at"], failed["duration_sec"]) == ("2025-02-01 06:00:00", 4.3)
    assert figures["database_error"] is None
    for table in figures["tables"]:
        path = getattr(report_lake.tables, table["table"])
        files = read_table(spark, path).inputFiles()
        assert table["location"] == str(path)
        assert table["version"] == DeltaTable.forPath(spark, str(path)).history().first()["version"]
        assert table["files"] == len(files)
        assert table["bytes"] == sum(os.path.getsize(f.removeprefix("file:")) for f in files)


def test_an_empty_month_and_an_unreachable_database_are_reported(spark, report_lake, tmp_path):
    url = parse_database_url("postgresql://nobody:s3cret-pw@127.0.0.1:9/none")
    path, figures = write_report(spark, report_lake, url, ["2023-05"], out=tmp_path / "r.html")

    assert (figures["months"], figures["quality"], figures["kpis"]) == (["2023-05"], [], [])
    assert figures["runs"] == [] and figures["zones_loaded"] is False
    assert "cannot connect to PostgreSQL at 127.0.0.1:9/none" in figures["database_error"]
    assert "PostgreSQL did not answer" in path.read_text()
    assert "s3cret-pw" not in path.read_text() + json.dumps(figures)
    assert list(tmp_path.iterdir()) == [path]  # no partial page left


def test_a_page_that_cannot_be_written_is_a_clear_error(spark, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    message = f"cannot write the report to {blocker}/r.html: File exists: {blocker}$"
    with pytest.raises(ConfigError, match=message):
        write_report(
            spark,
            settings,
            parse_database_url("postgresql://u@127.0.0.1:9/db"),
            out=blocker / "r.html",
        )


def test_cli_writes_the_page_and_prints_its_figures(spark, report_lake, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHILLFLOW_")}
    env.update(
        DATABASE_URL=report_lake.database_url.url(),
        CHILLFLOW_DATA_DIR=str(tmp_path / "data"),
        CHILLFLOW_LAKE_DIR=str(report_lake.lake_dir),
        LOG_LEVEL="WARNING",
    )

    def report(*args):
        command = [sys.executable, "-m", "chillflow", "report", *args]
        return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip

    bad = report("--month", "2025-13")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.strip().splitlines()[-1].startswith("error: invalid month '2025-13'")

    done = report("--month", "2025-01", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    path = Path(printed.pop("path"))
    assert path == tmp_path / "data" / "reports" / "chillflow-report.html"
    assert path.read_text().startswith("<!doctype html>")
    expected = collect_figures(spark, report_lake, report_lake.database_url, months=["2025-01"])
    for key in ("months", "quality", "kpis", "runs", "zones_loaded"):
        assert printed[key] == json.loads(json.dumps(expected[key])), key
