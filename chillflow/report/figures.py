"""The report's figures: small aggregates (a few hundred rows) of the tables, runs and zones."""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from typing import Any

import psycopg2
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ChillflowError, error_summary
from chillflow.settings import Settings
from chillflow.storage.delta import read_table, table_exists, table_version
from chillflow.storage.ledger import recent_runs
from chillflow.storage.locks import holder, reading_slices
from chillflow.storage.postgres import connect

LATEST_MONTHS = 12
EXAMPLES_PER_RULE = 3
TOP_ZONES = 10
RUNS_PER_JOB = 5
CURATE_WAIT_SEC = 600  # how long a report waits for a curate writing one of its months
TABLES = ("curated", "quarantine", "dq_metrics", "kpis")
EXAMPLE_COLUMNS = ("pickup_ts", "dropoff_ts", "pu_zone_id", "do_zone_id", "distance_km",
                   "duration_min", "fare_amount", "total_amount", "failed_rules",
                   "source_row")  # fmt: skip
#: Hourly KPI averages shown as daily means weighted by the hours' trips.
DAILY_MEANS = ("avg_fare", "avg_tip", "avg_speed_kmh")
_TS = "yyyy-MM-dd HH:mm:ss"
_SLICE = ("service", "month", "run_id")
_RULE = ("action", "status", "evaluated", "failed", "failure_rate", "max_failure_rate", "predicate")
_RUN_KEYS = ("job", "period", "status", "attempt", "started_at", "finished_at", "duration_sec",
             "rows_read", "rows_written", "run_id", "error")  # fmt: skip


def collect_figures(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    months: list[str] | None = None,
) -> dict[str, Any]:
    """Gather every number the report shows, as JSON-ready data.

    ``months`` defaults to the latest 12 of dq_metrics, and for the KPIs the KPI table's latest.
    ``database_error`` says why runs and zone names are missing, or is None.
    """
    tables = settings.tables
    chosen = sorted(set(months or ())) or _latest_months(spark, tables.dq_metrics)
    kpis = _kpis(spark, tables.kpis, sorted(set(months)) if months else None)
    top_zones = [zone for kpi in kpis for zone in kpi["top_zones"]]
    database, names = _database_figures(database_url, {zone["zone_id"] for zone in top_zones})
    for zone in top_zones:
        zone.update(names.get(zone["zone_id"], {}))
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "months": chosen,
        "quality": _quality(settings, _pinned_slices(spark, settings, database_url, chosen)),
        "kpis": kpis,
        **database,
        "tables": [_table_figures(spark, name, getattr(tables, name)) for name in TABLES],
    }


def _latest_months(spark: SparkSession, path: Any) -> list[str]:
    if not table_exists(spark, path):
        return []
    rows = read_table(spark, path).select("month").distinct().orderBy(F.desc("month"))
    return sorted(row["month"] for row in rows.limit(LATEST_MONTHS).collect())


def _pinned_slices(
    spark: SparkSession, settings: Settings, database_url: DatabaseUrl, months: list[str]
) -> dict[str, DataFrame | None]:
    """The months' rows of curated, quarantine and dq_metrics, pinned under shared locks."""
    names = ("curated", "quarantine", "dq_metrics")
    if not months:
        return dict.fromkeys(names)
    tables, what = settings.tables, f"reading the curated slices of {', '.join(months)}"
    reader = holder("report", "reading")
    with reading_slices(
        tables.curated, database_url, reader, months, what=what, wait_sec=CURATE_WAIT_SEC
    ):
        versions = {name: table_version(spark, getattr(tables, name)) for name in names}
    return {
        name: None
        if version is None
        else read_table(spark, getattr(tables, name), version).where(F.col("month").isin(months))
        for name, version in versions.items()
    }


def _quality(settings: Settings, pinned: dict[str, DataFrame | None]) -> list[dict[str, Any]]:
    """Per slice: rows in (from dq_metrics), curated and quarantined (counted), rule outcomes."""
    if pinned["dq_metrics"] is None:
        return []
    finished_at = F.date_format("finished_at", _TS).alias("finished_at")
    metrics = pinned["dq_metrics"].select(*_SLICE, finished_at, "rule", *_RULE)
    rows = [row.asDict() for row in metrics.collect()]
    curated, quarantined = (_slice_counts(pinned[name]) for name in ("curated", "quarantine"))
    rejecting = {row["rule"] for row in rows if row["action"] != "warn"}
    examples = _examples(pinned["quarantine"], rejecting)
    configured = {rule.name: (i, rule.description) for i, rule in enumerate(settings.curate.rules)}
    slices: dict[tuple[str, str], dict[str, Any]] = {}
    rows.sort(key=lambda r: (r["month"], r["service"], configured.get(r["rule"], (99,)), r["rule"]))
    for row in rows:
        key = (row["service"], row["month"])
        if key not in slices:
            kept, rows_in = curated.get(key, 0), row["evaluated"]
            slices[key] = {k: row[k] for k in (*_SLICE, "finished_at")} | {
                "rows_in": rows_in,
                "curated": kept,
                "quarantined": quarantined.get(key, 0),
                "retention_pct": round(100 * kept / rows_in, 4) if rows_in else None,
                "rules": [],
                "examples": examples.get(key, []),
            }
        description = configured.get(row["rule"], (0, ""))[1]
        rule = {"rule": row["rule"], "description": description} | {k: row[k] for k in _RULE}
        slices[key]["rules"].append(rule)
    return list(slices.values())


def _slice_counts(rows: DataFrame | None) -> dict[tuple[str, str], int]:
    if rows is None:
        return {}
    rows = rows.groupBy("service", "month").count().collect()
    return {(row["service"], row["month"]): row["count"] for row in rows}


def _examples(quarantined: DataFrame | None, rules: set[str]) -> dict[tuple, list]:
    """The first quarantined rows (in file order) failing each rejecting rule, per slice."""
    if not rules or quarantined is None:
        return {}
    first = Window.partitionBy("service", "month", "rule").orderBy("source_file", "source_row")
    shown = [
        F.date_format(c, _TS).alias(c) if c.endswith("_ts") else F.col(c) for c in EXAMPLE_COLUMNS
    ]
    rows = (
        quarantined.select(
            "service", "month", "source_file", F.explode("failed_rules").alias("rule"), *shown
        )
        .where(F.col("rule").isin(sorted(rules)))
        .withColumn("n", F.row_number().over(first))
        .where(F.col("n") <= EXAMPLES_PER_RULE)
        .orderBy("service", "month", "rule", "n")
        .collect()
    )
    examples: dict[tuple, list] = {}
    for row in rows:
        examples.setdefault((row["service"], row["month"]), []).append(
            {"rule": row["rule"], **{c: row[c] for c in EXAMPLE_COLUMNS}}
        )
    return examples


def _kpis(spark: SparkSession, path: Any, months: list[str] | None) -> list[dict[str, Any]]:
    if not table_exists(spark, path):
        return []
    table = read_table(spark, path)
    if months is None:
        last = table.agg(F.date_format(F.max("hour_ts"), "yyyy-MM")).first()[0]
        months = [last] if last else []
    return [kpi for kpi in (_month_kpis(table, month) for month in months) if kpi["trips"]]


def _month_kpis(table: DataFrame, month: str) -> dict[str, Any]:
    """Trips by day and hour; per day revenue and trip-weighted means; the busiest zones."""
    # Literal bounds on hour_ts let Delta prune the generated hour_date partitions.
    start = F.lit(f"{month}-01 00:00:00").cast("timestamp")
    rows = table.where((F.col("hour_ts") >= start) & (F.col("hour_ts") < F.add_months(start, 1)))
    day, trips = F.dayofmonth("hour_ts").alias("day"), F.sum("trips").alias("trips")
    revenue = F.round(F.sum("total_revenue"), 2).alias("revenue")
    weighted = {
        c: (F.col(c) * F.col("trips"), F.when(F.col(c).isNotNull(), F.col("trips")))
        for c in DAILY_MEANS
    }
    means = [
        F.round(F.try_divide(F.sum(x), F.sum(n)), 2).alias(c) for c, (x, n) in weighted.items()
    ]
    cells = rows.groupBy(day, F.hour("hour_ts").alias("hour")).agg(trips).collect()
    daily = [
        r.asDict() for r in rows.groupBy(day).agg(trips, revenue, *means).orderBy("day").collect()
    ]
    zones = rows.groupBy("zone_id").agg(trips, revenue).orderBy(F.desc("trips"), "zone_id")
    by_day_hour = [[0] * 24 for _ in range(calendar.monthrange(int(month[:4]), int(month[5:]))[1])]
    for cell in cells:
        by_day_hour[cell["day"] - 1][cell["hour"]] = cell["trips"]
    return {
        "month": month,
        "trips": sum(d["trips"] for d in daily),
        "revenue": round(sum(d["revenue"] for d in daily), 2),
        "by_day_hour": by_day_hour,
        "daily": daily,
        "top_zones": [
            {"zone_id": z["zone_id"], "zone": None, "borough": None} | z.asDict()
            for z in zones.limit(TOP_ZONES).collect()
        ],
    }


def _database_figures(
    url: DatabaseUrl, zone_ids: set[int]
) -> tuple[dict[str, Any], dict[int, dict]]:
    """Recent runs, and the names of ``zone_ids``; a database that cannot answer is reported."""
    try:
        with connect(url) as conn, conn.cursor() as cur:
            runs = [{k: run.get(k) for k in _RUN_KEYS} for run in recent_runs(conn, RUNS_PER_JOB)]
            cur.execute(
                "SELECT zone_id, borough, zone FROM dim.zone WHERE zone_id = ANY(%s)",
                (sorted(zone_ids),),
            )
            names = {zone_id: {"borough": b, "zone": z} for zone_id, b, z in cur.fetchall()}
            cur.execute("SELECT EXISTS (SELECT 1 FROM dim.zone)")
            loaded = cur.fetchone()[0]
    except (ChillflowError, psycopg2.Error) as exc:
        return {"runs": [], "zones_loaded": False, "database_error": error_summary(exc)}, {}
    return {"runs": runs, "zones_loaded": loaded, "database_error": None}, names


def _table_figures(spark: SparkSession, name: str, path: Any) -> dict[str, Any]:
    """Version, last operation, files and bytes of a Delta table, from its log alone."""
    figures: dict[str, Any] = {"table": name, "version": None}
    if table_exists(spark, path):
        table = DeltaTable.forPath(spark, str(path))
        last = table.history(1).select(
            "version", "operation", F.date_format("timestamp", _TS).alias("committed_at")
        )
        detail = table.detail().select(
            F.col("numFiles").alias("files"),
            F.col("sizeInBytes").alias("bytes"),
            F.col("partitionColumns").alias("partitioned_by"),
        )
        figures.update(last.first().asDict() | detail.first().asDict())
    return figures | {"location": str(path)}
