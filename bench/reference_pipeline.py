"""The reference a single-machine user would build instead of ChillFlow: DuckDB + PostgreSQL COPY.

An independent recomputation of one month with the project's behaviour: staging (column
mapping, case-insensitive names, Spark's casts), derived fields, the rules of
conf/quality_rules.toml as DuckDB SQL, curated and quarantine Parquet, trip keys, a COPY into
``{schema}.complete_trip`` (the columns and key of stg.complete_trip) and the hourly pickup-zone
KPIs into ``{schema}.zone_hourly_kpis``. :func:`differences` compares a ChillFlow run with it.

    DATABASE_URL=… HASH_SALT=… python bench/reference_pipeline.py RAW --out DIR [--month YYYY-MM]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import duckdb
import psycopg2
import tomllib

CONF = Path(os.environ.get("CHILLFLOW_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_FILE_MONTH = re.compile(r"[a-z]+_tripdata_(\d{4}-\d{2})", re.IGNORECASE)
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class ReferencePipelineError(Exception):
    """Input or rules the reference cannot process the way ChillFlow does."""


# Staging, as chillflow/transforms/staging.py: standard column -> (TLC name, matched
# case-insensitively; DuckDB type; required).
_PREFIX = {"yellow": "tpep", "green": "lpep"}
_RAW = {
    "vendor_id": ("VendorID", "INTEGER", True),
    "pickup_ts": ("{p}_pickup_datetime", "TIMESTAMP", True),
    "dropoff_ts": ("{p}_dropoff_datetime", "TIMESTAMP", True),
    "passenger_count": ("passenger_count", "INTEGER", True),
    "trip_distance": ("trip_distance", "DOUBLE", True),
    "rate_code": ("RatecodeID", "INTEGER", True),
    "store_and_fwd_flag": ("store_and_fwd_flag", "VARCHAR", True),
    "pu_zone_id": ("PULocationID", "INTEGER", True),
    "do_zone_id": ("DOLocationID", "INTEGER", True),
    "payment_type": ("payment_type", "INTEGER", True),
    "fare_amount": ("fare_amount", "DOUBLE", True),
    "extra": ("extra", "DOUBLE", True),
    "mta_tax": ("mta_tax", "DOUBLE", True),
    "tip_amount": ("tip_amount", "DOUBLE", True),
    "tolls_amount": ("tolls_amount", "DOUBLE", True),
    "improvement_surcharge": ("improvement_surcharge", "DOUBLE", True),
    "total_amount": ("total_amount", "DOUBLE", True),
    "congestion_surcharge": ("congestion_surcharge", "DOUBLE", False),
    "airport_fee": ("airport_fee", "DOUBLE", False),
    "cbd_congestion_fee": ("cbd_congestion_fee", "DOUBLE", False),
    "ehail_fee": ("ehail_fee", "DOUBLE", False),
    "trip_type": ("trip_type", "INTEGER", False),
}
STAGED = ("service", *_RAW, "month", "source_file", "source_row")
DERIVED = ("distance_km", "duration_min", "avg_speed_kmh")
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT")
_EXACT_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT")
_FRACTIONS = ("FLOAT", "DOUBLE", "DECIMAL")

# Rules: Spark SQL functions that DuckDB names or types differently, as DuckDB macros. Any other
# function call fails loudly, except these that mean the same in both dialects.
_MACROS = {
    "to_timestamp": "CREATE TEMP MACRO spark_to_timestamp(s) AS CAST(s AS TIMESTAMP)",
    # Spark's add_months returns a DATE; both clamp a month end (Jan 31 + 1 -> Feb 28).
    "add_months": "CREATE TEMP MACRO spark_add_months(d, n) AS "
    "CAST(CAST(d AS DATE) + to_months(CAST(n AS INTEGER)) AS DATE)",
}
_SAME = {"coalesce", "abs", "and", "or", "not", "in", "between", "is"}
_CALL = re.compile(r"'(?:[^']|'')*'|\b([A-Za-z_]\w*)\s*\(")

# PostgreSQL: the columns and key of stg.complete_trip and mart.zone_hourly_kpis.
_DOUBLE = "double precision"
TRIP_KEY = "(trip_key, service, pickup_month)"
TRIP_COLUMNS = {
    "trip_key": "char(64)",
    "vehicle_id_h": "text NOT NULL",
    "service": "text NOT NULL",
    "vendor_id": "integer",
    "pickup_ts": "timestamp NOT NULL",
    "dropoff_ts": "timestamp",
    "pickup_month": "text NOT NULL",
    **dict.fromkeys(("passenger_count", "pu_zone_id", "do_zone_id"), "integer"),
    **dict.fromkeys(("payment_type", "rate_code"), "integer"),
    **dict.fromkeys(("trip_distance", "distance_km", "duration_min", "avg_speed_kmh"), _DOUBLE),
    **dict.fromkeys(("fare_amount", "tip_amount", "tolls_amount", "total_amount"), _DOUBLE),
    **dict.fromkeys(("congestion_surcharge", "airport_fee"), _DOUBLE),
    "source_file": "text",
    "source_row": "bigint",
    "curated_run_id": "text",
    "created_at": "timestamptz NOT NULL DEFAULT now()",
    "updated_at": "timestamptz NOT NULL DEFAULT now()",
}
#: KPI name -> (trip column, fixed units per unit of it) of every average, in table order.
_MEANS = {
    "avg_fare": ("fare_amount", 100),
    "avg_tip": ("tip_amount", 100),
    "avg_speed_kmh": ("avg_speed_kmh", 1000),
    "avg_distance_km": ("distance_km", 1000),
    "avg_duration_min": ("duration_min", 60000),
}
KPI_COLUMNS = {
    "zone_id": "integer",
    "hour_ts": "timestamp",
    "trips": "bigint",
    **dict.fromkeys((*_MEANS, "pct_card"), _DOUBLE),
    "unique_vehicles": "bigint",
    "total_revenue": _DOUBLE,
    "outlier_rate": _DOUBLE,
    "computed_at": "timestamptz",
}


@dataclass(frozen=True)
class Rule:
    """A rule of conf/quality_rules.toml, its predicate in DuckDB's dialect."""

    name: str
    predicate: str
    action: str
    max_failure_rate: float | None = None


def load_rules(path: Path = CONF / "quality_rules.toml") -> tuple[Rule, ...]:
    """Read the rules and translate every predicate (see :func:`to_duckdb`)."""
    return tuple(
        Rule(
            r["name"], to_duckdb(r["name"], r["predicate"]), r["action"], r.get("max_failure_rate")
        )
        for r in tomllib.loads(path.read_text())["rules"]
    )


def to_duckdb(name: str, predicate: str) -> str:
    """Translate a Spark SQL predicate; refuse a function call without a known translation.

    Double quotes (strings in Spark, identifiers in DuckDB) and backticks are refused too.
    """
    if '"' in predicate or "`" in predicate:
        raise ReferencePipelineError(f"rule {name!r}: quotes or backticks in {predicate!r}")

    def call(match: re.Match) -> str:
        function = (match[1] or "").lower()
        if match[1] is None or function in _SAME:
            return match[0]
        if function in _MACROS:
            return f"spark_{function}("
        raise ReferencePipelineError(
            f"rule {name!r}: no DuckDB translation of Spark's {match[1]}() in {predicate!r}; "
            "add one to _MACROS in bench/reference_pipeline.py"
        )

    return _CALL.sub(call, predicate)


def month_of(raw: Path, month: str | None = None) -> str:
    """The explicit month, or the one in a TLC file name."""
    found = month or next(iter(_FILE_MONTH.findall(raw.name)), None)
    if found is None or not _MONTH.match(found):
        raise ReferencePipelineError(f"{raw}: no month YYYY-MM given or in the file name")
    return found


def month_bounds(month: str) -> tuple[str, str]:
    """SQL literals of the month's first instant and of the next month's."""
    year, number = int(month[:4]), int(month[5:])
    following = f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"
    return f"TIMESTAMP '{month}-01 00:00:00'", f"TIMESTAMP '{following}-01 00:00:00'"


def connect_duckdb(temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB in UTC with the rule macros."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {_literal(str(temp_dir))}")
    for macro in _MACROS.values():
        con.execute(macro)
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _cast(raw: Path, name: str | None, source: str | None, target: str) -> tuple[str, str]:
    """A raw column cast as Spark's staging casts it, and when a present value was lost.

    A cast to INTEGER gives NULL for a fraction, NaN, an infinity or a value beyond INTEGER
    (DuckDB alone would round), which ChillFlow lists in ``parse_errors``.
    """
    column = '"' + (name or "").replace('"', '""') + '"'
    if name is None or source == '"NULL"':
        return f"CAST(NULL AS {target})", "false"
    if target == "TIMESTAMP" and source == "TIMESTAMP_NS":
        return f"make_timestamp(epoch_ns({column}) // 1000)", "false"  # Spark: nanos div 1000
    if target == "TIMESTAMP" and source.startswith("TIMESTAMP"):
        return f"CAST({column} AS TIMESTAMP)", "false"  # in UTC: an instant's UTC wall clock
    if target == "INTEGER" and source in _EXACT_INTEGERS:
        return f"CAST({column} AS INTEGER)", "false"
    if target == "INTEGER" and source.startswith(_INTEGERS + _FRACTIONS):
        number = f"TRY_CAST({column} AS DOUBLE)"
        whole = f"{number} = trunc({number}) AND {number} BETWEEN -2147483648 AND 2147483647"
        value = f"CASE WHEN {whole} THEN CAST({number} AS INTEGER) END"
        return value, f"({column} IS NOT NULL AND ({value}) IS NULL)"
    if target == "DOUBLE" and source.startswith(_INTEGERS + _FRACTIONS):
        return f"CAST({column} AS DOUBLE)", "false"
    if target == "VARCHAR" and source.startswith(("VARCHAR", *_INTEGERS)):
        return f"CAST({column} AS VARCHAR)", "false"
    raise ReferencePipelineError(f"{raw}: column {name} is {source}; no cast to {target} known")


def _staged_sql(con: duckdb.DuckDBPyConnection, raw: Path, month: str) -> tuple[str, str]:
    """The service of one raw file and the SELECT staging it."""
    described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(raw)]).fetchall()
    found = {row[0].lower(): (row[0], row[1]) for row in described}
    service = next((s for s, p in _PREFIX.items() if f"{p}_pickup_datetime" in found), None)
    names = {c: n.format(p=_PREFIX.get(service, "tpep")) for c, (n, _, _) in _RAW.items()}
    missing = [n for c, n in names.items() if _RAW[c][2] and n.lower() not in found]
    if service is None or missing or len(found) != len(described):
        raise ReferencePipelineError(
            f"{raw}: not a yellow/green TLC layout from 2016-07 on; missing {missing}; "
            f"found {[row[0] for row in described]}"
        )
    columns = {"service": _literal(service), "month": _literal(month)}
    errors = []
    for column, (_, target, _) in _RAW.items():
        name, source = found.get(names[column].lower(), (None, None))
        columns[column], lost = _cast(raw, name, source, target)
        if lost != "false":
            text = 'CAST("' + name.replace('"', '""') + '" AS VARCHAR)'
            errors.append(f"CASE WHEN {lost} THEN '{column}=''' || {text} || '''' END")
    columns |= {"source_file": "parse_filename(filename)", "source_row": "file_row_number"}
    listed = f"[x FOR x IN [{', '.join(errors)}]::VARCHAR[] IF x IS NOT NULL]"
    columns["parse_errors"] = f"nullif({listed}, [])" if errors else "CAST(NULL AS VARCHAR[])"
    select = ", ".join(f"{columns[c]} AS {c}" for c in (*STAGED, "parse_errors"))
    source = f"read_parquet({_literal(str(raw))}, filename = true, file_row_number = true)"
    return service, f"SELECT {select} FROM {source}"


def _elapsed_us(month: str) -> str:
    """Microseconds from pickup to dropoff, wall-clock times read as instants of the data zone.

    The zone's offset changes from a day before the month to a day after it come from
    zoneinfo; a wall time before a change's end reads with the offset before it (a skipped
    time moves forward, a repeated one is read in summer time), and a dropoff in a repeated
    hour that would end the trip before it starts takes the later offset, as in ChillFlow.
    """
    main = tomllib.loads((CONF / "chillflow.toml").read_text())
    zone = ZoneInfo(main.get("curate", {}).get("data_time_zone", "America/New_York"))
    minute, us = timedelta(minutes=1), timedelta(microseconds=1)
    at = datetime.strptime(month, "%Y-%m").replace(tzinfo=timezone.utc) - timedelta(days=1)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    changes = []  # (wall start, wall end, offset before, offset after), microseconds
    for _ in range(34 * 24 * 60):
        before, after = at.astimezone(zone).utcoffset(), (at + minute).astimezone(zone).utcoffset()
        if before != after:
            walls = sorted((at + minute + offset - epoch) // us for offset in (before, after))
            changes.append((*walls, before // us, after // us))
        at += minute
    if not changes:
        return "epoch_us(dropoff_ts) - epoch_us(pickup_ts)"

    def instant(column: str) -> str:
        offsets = " ".join(f"WHEN epoch_us({column}) < {end} THEN {b}" for _, end, b, _ in changes)
        return f"(epoch_us({column}) - CASE {offsets} ELSE {changes[-1][3]} END)"

    repeated = " ".join(
        f"WHEN epoch_us(dropoff_ts) >= {start} AND epoch_us(dropoff_ts) < {end} THEN {b - a}"
        for start, end, b, a in changes
        if b > a
    )
    pickup, dropoff = instant("pickup_ts"), instant("dropoff_ts")
    later = f"{dropoff} + CASE {repeated} ELSE 0 END" if repeated else dropoff
    return f"(CASE WHEN {dropoff} < {pickup} THEN {later} ELSE {dropoff} END - {pickup})"


def flag_trips(
    con: duckdb.DuckDBPyConnection, raw: Path, month: str, rules: tuple[Rule, ...]
) -> tuple[str, dict[str, int]]:
    """Stage, derive and check one raw file into the temp table ``flagged``.

    Returns:
        The service, and input_rows with the failed rows of every rule.

    Raises:
        ReferencePipelineError: A predicate DuckDB cannot evaluate, or a rule failing the run.
    """
    service, staged = _staged_sql(con, raw, month)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW derived AS
        SELECT *, CASE WHEN duration_min > 0 THEN distance_km / (duration_min / 60.0::DOUBLE)
                  END AS avg_speed_kmh
        FROM (SELECT *, trip_distance * 1.60934::DOUBLE AS distance_km,
                     CAST({_elapsed_us(month)} AS DOUBLE) / 60000000.0::DOUBLE AS duration_min
              FROM ({staged}))
    """)
    for rule in rules:
        try:
            kind = con.execute(f"DESCRIBE SELECT ({rule.predicate}) FROM derived").fetchone()[1]
        except duckdb.Error as exc:
            raise ReferencePipelineError(
                f"rule {rule.name!r}: not valid in DuckDB: {exc}"
            ) from None
        if kind != "BOOLEAN":
            raise ReferencePipelineError(f"rule {rule.name!r} gives {kind}, not BOOLEAN")
    ok = [f"_ok_{i}" for i in range(len(rules))]

    def names(keep) -> str:
        chosen = [
            f"CASE WHEN NOT {c} THEN {_literal(r.name)} END"
            for c, r in zip(ok, rules, strict=True)
            if keep(r)
        ]
        return f"[x FOR x IN [{', '.join(chosen)}]::VARCHAR[] IF x IS NOT NULL]"

    paired = list(zip(ok, rules, strict=True))
    rejected = " OR ".join(f"NOT {c}" for c, r in paired if r.action != "warn")
    checks = ", ".join(f"coalesce(({r.predicate}), false) AS {c}" for c, r in paired)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE flagged AS
        SELECT *, {names(lambda r: True)} AS failed_rules,
               {names(lambda r: r.action == "warn")} AS dq_warnings,
               {rejected or "false"} AS rejected
        FROM (SELECT *, {checks or "true AS _ok"} FROM derived)
    """)
    failed = "".join(f", count(*) FILTER (WHERE NOT {c})" for c in ok)
    counts = con.execute(f"SELECT count(*){failed} FROM flagged").fetchone()
    for rule, n in zip(rules, counts[1:], strict=True):
        limit = rule.max_failure_rate
        if (n / max(counts[0], 1) > limit) if limit is not None else (rule.action == "fail" and n):
            raise ReferencePipelineError(f"{raw}: rule {rule.name} failed the run ({n} rows)")
    return service, {
        "input_rows": counts[0],
        **dict(zip([r.name for r in rules], counts[1:], strict=True)),
    }


def curate_month(
    con: duckdb.DuckDBPyConnection, raw: Path, out: Path, month: str, rules: tuple[Rule, ...]
) -> dict:
    """The curate stage: ``flagged``, then curated.parquet and quarantine.parquet in ``out``."""
    service, outcome = flag_trips(con, raw, month, rules)
    run_id = secrets.token_hex(8)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, where, extra in (
        ("curated", "NOT rejected", "dq_warnings, now() AS curated_at"),
        ("quarantine", "rejected", "parse_errors, failed_rules, now() AS quarantined_at"),
    ):
        query = f"SELECT {', '.join(STAGED + DERIVED)}, {extra}, {_literal(run_id)} AS run_id"
        target = _literal(str(out / f"{name}.parquet"))
        copy = f"COPY ({query} FROM flagged WHERE {where}) TO {target} (FORMAT parquet)"
        counts[name] = con.execute(copy).fetchone()[0]
    if counts["curated"] + counts["quarantine"] != outcome["input_rows"]:
        raise ReferencePipelineError(f"{raw}: {outcome['input_rows']} rows in, {counts} out")
    return {
        "run_id": run_id,
        "service": service,
        "month": month,
        "input_rows": outcome["input_rows"],
        "output_rows": counts["curated"],
        "quarantined_rows": counts["quarantine"],
    }


def key_columns() -> str:
    """trip_key and vehicle_id_h as chillflow/transforms/keys.py makes them; salt ``$salt``."""

    def text(sql: str) -> str:
        return f"coalesce(CAST({sql} AS VARCHAR), 'None')"

    micros = "((epoch_us(pickup_ts) % 1000000) + 1000000) % 1000000"
    iso = (
        f"coalesce(strftime(pickup_ts, '%Y-%m-%dT%H:%M:%S') || CASE WHEN {micros} <> 0 "
        f"THEN '.' || lpad(CAST({micros} AS VARCHAR), 6, '0') ELSE '' END, 'None')"
    )
    service = "coalesce(CASE WHEN service <> 'yellow' THEN service || '|' END, '')"
    trip = (
        f"$salt || '|' || {service} || {text('vendor_id')} || '|' || {iso} || '|' "
        f"|| {text('pu_zone_id')} || '|' || {text('source_row')}"
    )
    bucket = text("((source_row % 5000) + 5000) % 5000")
    vehicle = f"$salt || '|vehicle|' || {text('vendor_id')} || '|' || {bucket}"
    return f"sha256({trip}) AS trip_key, 'veh_' || substr(sha256({vehicle}), 1, 12) AS vehicle_id_h"


def kpi_sql(trips: str, quarantined: str | None, where: str = "true") -> str:
    """The hourly pickup-zone KPIs of chillflow/transforms/kpis.py, with exact integer sums.

    Args:
        trips: A relation with pickup_ts, pu_zone_id, vehicle_id_h and the measures.
        quarantined: A relation of quarantined rows (pickup_ts, pu_zone_id), or None (unknown).
        where: A predicate both are filtered with (the window).
    """

    def units(column: str, per_unit: int) -> str:
        return f"CAST(floor({column} * {per_unit}.0::DOUBLE + 0.5::DOUBLE) AS BIGINT)"

    sums = "".join(
        f", CAST(sum({units(c, u)}) AS DOUBLE) AS {k}_sum, count({units(c, u)}) AS {k}_n"
        for k, (c, u) in _MEANS.items()
    )
    means = "".join(
        f", CASE WHEN {k}_n > 0 THEN {k}_sum / ({k}_n * {u}.0::DOUBLE) END AS {k}"
        for k, (_, u) in _MEANS.items()
    )
    hour = "date_trunc('hour', pickup_ts)"
    keyed = f"pu_zone_id IS NOT NULL AND pickup_ts IS NOT NULL AND ({where})"
    outlier, join = "NULL", ""
    if quarantined is not None:
        outlier = "coalesce(q.rows, 0) * 100.0::DOUBLE / (trips + coalesce(q.rows, 0))"
        join = (
            f"LEFT JOIN (SELECT CAST(pu_zone_id AS INTEGER) AS zone_id, {hour} AS hour_ts, "
            f"count(*) AS rows FROM {quarantined} WHERE {keyed} GROUP BY ALL) q "
            "USING (zone_id, hour_ts)"
        )
    return f"""
        SELECT zone_id, hour_ts, trips{means}, card_trips * 100.0::DOUBLE / trips AS pct_card,
               unique_vehicles, revenue / 100.0::DOUBLE AS total_revenue, {outlier} AS outlier_rate
        FROM (SELECT CAST(pu_zone_id AS INTEGER) AS zone_id, {hour} AS hour_ts,
                     count(*) AS trips{sums},
                     count(*) FILTER (WHERE payment_type = 1) AS card_trips,
                     count(DISTINCT vehicle_id_h) AS unique_vehicles,
                     CAST(sum({units("total_amount", 100)}) AS DOUBLE) AS revenue
              FROM {trips} WHERE {keyed} GROUP BY ALL) {join}
    """


def _copy_into(pg, con: duckdb.DuckDBPyConnection, query: str, table: str, csv: Path) -> int:
    """COPY a DuckDB query's rows into a PostgreSQL table through a CSV file; return the rows."""
    columns = [row[0] for row in con.execute(f"DESCRIBE {query}").fetchall()]
    con.execute(f"COPY ({query}) TO {_literal(str(csv))} (HEADER false)")
    with pg.cursor() as cur, csv.open() as rows:
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)", rows)
        copied = cur.rowcount
    csv.unlink()
    return copied


def load_trips(
    con: duckdb.DuckDBPyConnection, pg, schema: str, curated: dict, salt: str, out: Path
) -> int:
    """Key the curated rows with a pickup in their month; replace the slice in one transaction."""
    start, end = month_bounds(curated["month"])
    renamed = {"pickup_month": "month", "curated_run_id": _literal(curated["run_id"])}
    columns = ", ".join(f"{renamed.get(c, c)} AS {c}" for c in list(TRIP_COLUMNS)[2:-2])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE keyed AS SELECT {key_columns()}, {columns} FROM flagged "
        f"WHERE NOT rejected AND pickup_ts >= {start} AND pickup_ts < {end}",
        {"salt": salt},
    )
    with pg.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table, columns in (("complete_trip", TRIP_COLUMNS), ("zone_hourly_kpis", KPI_COLUMNS)):
            key = ", PRIMARY KEY " + (
                "(zone_id, hour_ts)" if table == "zone_hourly_kpis" else TRIP_KEY
            )
            ddl = ", ".join(f"{c} {t}" for c, t in columns.items())
            cur.execute(f"CREATE TABLE IF NOT EXISTS {schema}.{table} ({ddl}{key})")
        cur.execute(
            f"DELETE FROM {schema}.complete_trip WHERE service = %s AND pickup_month = %s",
            (curated["service"], curated["month"]),
        )
    loaded = _copy_into(pg, con, "FROM keyed", f"{schema}.complete_trip", out / "trips.csv")
    pg.commit()
    return loaded


def aggregate_month(con: duckdb.DuckDBPyConnection, pg, schema: str, month: str, out: Path) -> int:
    """The month's KPIs, outlier rates from its quarantined rows; replace the month's hours."""
    start, end = month_bounds(month)
    hours = f"hour_ts >= {start} AND hour_ts < {end}"
    kpis = kpi_sql("keyed", "(FROM flagged WHERE rejected)", hours.replace("hour_ts", "pickup_ts"))
    with pg.cursor() as cur:
        cur.execute(f"DELETE FROM {schema}.zone_hourly_kpis WHERE {hours}")
    query = f"SELECT *, now() AS computed_at FROM ({kpis})"
    rows = _copy_into(pg, con, query, f"{schema}.zone_hourly_kpis", out / "kpis.csv")
    pg.commit()
    return rows


def run_month(
    raw: Path,
    out: Path,
    database_url: str,
    salt: str,
    *,
    month: str | None = None,
    schema: str = "reference",
    rules: tuple[Rule, ...] | None = None,
) -> dict:
    """Curate, load and aggregate one raw month; a rerun replaces the same slice and hours.

    Returns:
        run_id, service, month, input_rows, output_rows, quarantined_rows, loaded, kpi_rows and
        each step's seconds (curate_sec, load_sec, kpis_sec).
    """
    if not _NAME.match(schema):
        raise ReferencePipelineError(f"schema {schema!r}: expected a plain lower-case name")
    started = time.monotonic()
    con = connect_duckdb(out / "duckdb-tmp")
    stats = curate_month(con, raw, out, month_of(raw, month), rules or load_rules())
    curated = time.monotonic()
    pg = psycopg2.connect(database_url)
    try:
        stats["loaded"] = load_trips(con, pg, schema, stats, salt, out)
        loaded = time.monotonic()
        stats["kpi_rows"] = aggregate_month(con, pg, schema, stats["month"], out)
    finally:
        pg.close()
    return stats | {
        "curate_sec": round(curated - started, 3),
        "load_sec": round(loaded - curated, 3),
        "kpis_sec": round(time.monotonic() - loaded, 3),
    }


def delta_files(table: Path, service: str, month: str) -> list[str]:
    """The live Parquet files of one slice of a Delta table, from its JSON log.

    Enough for the fresh tables compared here: refuses checkpoints and deletion vectors.
    """
    log = table / "_delta_log"
    if not log.is_dir() or any(log.glob("*.checkpoint*")):
        raise ReferencePipelineError(f"{table}: no Delta log, or a checkpointed one")
    live: dict[str, dict] = {}
    for commit in sorted(log.glob("*.json")):
        for action in map(json.loads, commit.read_text().splitlines()):
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    if any(add.get("deletionVector") for add in live.values()):
        raise ReferencePipelineError(f"{table}: deletion vectors are not read here")
    wanted = {"service": service, "month": month}
    return sorted(
        str(table / unquote(p)) for p, a in live.items() if a["partitionValues"] == wanted
    )


def _compare(
    cur,
    what: str,
    ours: str,
    theirs: str,
    keys: tuple[str, ...],
    columns: list[str],
    doubles: set[str],
) -> tuple[list[str], dict]:
    """Full join of ChillFlow's relation ``ours`` and the reference's ``theirs`` on ``keys``.

    Doubles count as equal within 1e-9 (relative above 1). Runs on a psycopg2 cursor or a
    DuckDB connection alike.
    """

    def same(c: str) -> str:
        exact = f"c.{c} IS NOT DISTINCT FROM r.{c}"
        near = f"abs(c.{c} - r.{c}) <= 1e-9 * greatest(1.0, abs(c.{c}), abs(r.{c}))"
        return f"({exact} OR coalesce({near}, false))" if c in doubles else exact

    k = keys[0]
    both = f"c.{k} IS NOT NULL AND r.{k} IS NOT NULL"
    joined = f"{ours} c FULL JOIN {theirs} r ON " + " AND ".join(f"c.{x} = r.{x}" for x in keys)
    inexact = " OR ".join(f"c.{c} IS DISTINCT FROM r.{c}" for c in sorted(doubles)) or "false"
    cur.execute(
        f"SELECT count(c.{k}), count(r.{k}), count(*) FILTER (WHERE r.{k} IS NULL), "
        f"count(*) FILTER (WHERE c.{k} IS NULL), count(*) FILTER (WHERE {both} AND ({inexact}))"
        + "".join(f", count(*) FILTER (WHERE {both} AND NOT {same(c)})" for c in columns)
        + f" FROM {joined}"
    )
    rows, reference_rows, only_ours, only_theirs, inexact_rows, *differing = cur.fetchone()

    def examples(where: str, *shown: str) -> list[tuple[str, ...]]:
        cur.execute(f"SELECT {', '.join(shown)} FROM {joined} WHERE {where} LIMIT 3")
        return [tuple(map(str, row)) for row in cur.fetchall()]

    problems = []
    for n, side, alias, other in (
        (only_ours, "ChillFlow", "c", "r"),
        (only_theirs, "the reference", "r", "c"),
    ):
        if n:
            shown = examples(f"{other}.{k} IS NULL", *(f"{alias}.{x}" for x in keys))
            problems.append(f"{what}: {n} rows only in {side}, e.g. {shown}")
    problems += [
        f"{what}.{c}: {n} rows differ (key, ChillFlow, reference): "
        f"{examples(f'{both} AND NOT {same(c)}', *(f'c.{x}' for x in keys), f'c.{c}', f'r.{c}')}"
        for c, n in zip(columns, differing, strict=True)
        if n
    ]
    return problems, {"rows": rows, "reference_rows": reference_rows, "inexact": inexact_rows}


def differences(
    database_url: str,
    schema: str,
    stats: dict,
    curated_table: Path,
    quarantine_table: Path,
    out: Path,
) -> tuple[list[str], str]:
    """Compare a ChillFlow run of the month with the reference's, row for row.

    Args:
        database_url: The database both loaded (stg.complete_trip, mart.zone_hourly_kpis).
        schema: The reference's schema there.
        stats: The reference run's statistics (service and month).
        curated_table: ChillFlow's curated Delta table.
        quarantine_table: ChillFlow's quarantine Delta table.
        out: The reference run's output directory.

    Returns:
        One line per difference (none when equal), and a summary of what was compared.
    """
    service, month = stats["service"], stats["month"]
    if service not in _PREFIX or not _MONTH.match(month) or not _NAME.match(schema):
        raise ReferencePipelineError(f"cannot compare {service!r} {month!r} in {schema!r}")
    problems, summary = [], {}
    lineage = ("source_file", "source_row")
    doubles = {c for c, (_, kind, _) in _RAW.items() if kind == "DOUBLE"} | set(DERIVED)
    row_columns = [c for c in STAGED + DERIVED if c not in ("service", "month", *lineage)]
    con = connect_duckdb()
    for name, table, rules in (
        ("curated", curated_table, "dq_warnings"),
        ("quarantine", quarantine_table, "failed_rules"),
    ):
        theirs = f"read_parquet({_literal(str(out / f'{name}.parquet'))})"
        files = ", ".join(map(_literal, delta_files(table, service, month)))
        ours = f"read_parquet([{files}])" if files else f"(FROM {theirs} WHERE false)"
        found, summary[name] = _compare(
            con, name, ours, theirs, lineage, [*row_columns, rules], doubles
        )
        problems += found
    start, end = month_bounds(month)
    where = {
        "complete_trip": f"service = '{service}' AND pickup_month = '{month}'",
        "zone_hourly_kpis": f"hour_ts >= {start} AND hour_ts < {end}",
    }
    with psycopg2.connect(database_url) as pg, pg.cursor() as cur:
        for name, home, keys, columns in (
            ("complete_trip", "stg", ("trip_key",), TRIP_COLUMNS),
            ("zone_hourly_kpis", "mart", ("zone_id", "hour_ts"), KPI_COLUMNS),
        ):
            skipped = (*keys, "curated_run_id", "created_at", "updated_at", "computed_at")
            compared = [c for c in columns if c not in skipped]
            found, summary[name] = _compare(
                cur,
                name,
                f"(SELECT * FROM {home}.{name} WHERE {where[name]})",
                f"(SELECT * FROM {schema}.{name} WHERE {where[name]})",
                keys,
                compared,
                {c for c in compared if columns[c] == _DOUBLE},
            )
            problems += found
    pg.close()
    inexact = sum(s["inexact"] for s in summary.values())
    line = (
        f"{summary['curated']['rows']:,} curated and {summary['quarantine']['rows']:,} "
        f"quarantined rows (every column, the rules each failed), "
        f"{summary['complete_trip']['rows']:,} loaded trips and "
        f"{summary['zone_hourly_kpis']['rows']:,} KPI rows (every column); "
        + (
            f"{inexact:,} rows hold a double within 1e-9, not bit-identical"
            if inexact
            else "every double bit-identical"
        )
    )
    return problems, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="a raw TLC monthly Parquet file")
    parser.add_argument("--out", type=Path, required=True, help="directory of the Parquet outputs")
    parser.add_argument("--month", help="YYYY-MM; by default from the file name")
    parser.add_argument("--schema", default="reference", help="PostgreSQL schema of its tables")
    parser.add_argument("--curate-only", action="store_true", help="curate alone, no PostgreSQL")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    args = parser.parse_args(argv)
    database_url, salt = os.environ.get("DATABASE_URL"), os.environ.get("HASH_SALT")
    if not args.curate_only and not (database_url and salt):
        print("error: set DATABASE_URL and HASH_SALT in the environment", file=sys.stderr)
        return 2
    try:
        if args.curate_only:
            con = connect_duckdb(args.out / "duckdb-tmp")
            stats = curate_month(
                con, args.raw, args.out, month_of(args.raw, args.month), load_rules()
            )
        else:
            stats = run_month(
                args.raw, args.out, database_url, salt, month=args.month, schema=args.schema
            )
    except (ReferencePipelineError, duckdb.Error, psycopg2.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(stats) if args.json else stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
