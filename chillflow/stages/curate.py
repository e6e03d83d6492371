"""The curate stage: raw TLC Parquet -> curated, quarantine and DQ-metrics Delta tables."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import reduce
from itertools import chain
from pathlib import Path
from typing import Any

import structlog
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ConfigError, ConservationError, error_summary
from chillflow.failpoints import failpoint
from chillflow.logs import bound_run, new_run_id
from chillflow.progress import spark_progress
from chillflow.schemas import (
    CLUSTER_BY,
    CURATED_DDL,
    DERIVED_DDL,
    DQ_METRICS_DDL,
    MONTH_PARTITION,
    QUARANTINE_DDL,
    STAGED_DDL,
    columns,
    local_frame,
    struct,
)
from chillflow.settings import CurateSettings, QualityRule, Settings
from chillflow.stages.rule_outcomes import RuleOutcome, assess_rules, raise_on_failed_rules
from chillflow.storage.delta import replace_slices, restore_slices, table_version
from chillflow.storage.ledger import CURATE_JOB, RunRecord, recorded_run
from chillflow.storage.locks import TABLE_LOCK, hold, holder, lake_locks, slice_lock
from chillflow.storage.raw import RawFile, find_raw_files, read_raw_file, unreadable_raw_file
from chillflow.transforms.derived import with_derived_fields
from chillflow.transforms.quality import (
    REJECTED_COL,
    rejected_rows,
    rule_failure_counts,
    valid_rows,
    with_rule_results,
)
from chillflow.transforms.staging import plan_layout, stage_trips


@dataclass(frozen=True)
class CurateTargets:
    """Where one curate run writes."""

    curated: Path
    quarantine: Path
    dq_metrics: Path


def curate(
    spark: SparkSession,
    settings: Settings,
    raw_location: str | Path | Sequence[RawFile],
    *,
    month: str | None = None,
    targets: CurateTargets | None = None,
    run_id: str | None = None,
    database_url: DatabaseUrl | None = None,
) -> dict[str, Any]:
    """Curate one or more raw monthly files into the Delta tables.

    Each (service, month) slice of the curated, quarantine and DQ-metrics tables is replaced
    under the slice's exclusive lock, so a rerun converges to the same rows and a concurrent
    curate of the same slice refuses. When the run fails after a first commit, the slices it
    replaced are put back as they were. ``raw_location`` is a file, directory or glob (files
    of ``month``, by default the one in their names) or the files ``find_raw_files`` found;
    ``database_url`` holds the run ledger (None records nothing).

    Returns:
        Run statistics: input_rows, output_rows, quarantined_rows, retention_rate (percent),
        rejections (rule -> failed rows), warnings, duration_sec, and more.

    Raises:
        ConfigError: Bad arguments or rules. SchemaError: unsupported file layout.
        DataQualityError: A rule failed the run (nothing written).
        ConservationError: Input rows != curated + quarantined rows (slices put back).
        BusyError: Another run holds one of the slices.
    """
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    run_id = run_id or new_run_id()
    targets = targets or CurateTargets(
        settings.tables.curated, settings.tables.quarantine, settings.tables.dq_metrics
    )
    rules = settings.curate.rules
    located = isinstance(raw_location, (str, Path))
    files = find_raw_files(raw_location, month) if located else list(raw_location)
    months = sorted({f.month for f in files})
    paths = [str(f.path) for f in files]
    with bound_run(CURATE_JOB, run_id, month=",".join(months)) as log, ExitStack() as run:
        log.info("curate.started", files=paths, rules=len(rules))
        _check_rules(spark, rules)
        trips, slices = _flagged_trips(spark, files, settings.curate)
        source = ", ".join(paths)
        record = run.enter_context(_locked_run(targets, database_url, slices, run_id))

        with spark_progress(spark, "curate.assess"):
            try:
                per_slice = (
                    trips.groupBy(*MONTH_PARTITION)
                    .agg(
                        F.count(F.lit(1)).alias("input_rows"),
                        F.count_if(~F.col(REJECTED_COL)).alias("kept_rows"),
                        *rule_failure_counts(rules),
                    )
                    .collect()
                )
            except Exception as exc:  # the first read of the rows: a corrupt page shows here
                failure = unreadable_raw_file(exc, files)
                if failure is None:
                    raise
                raise failure from None
        outcomes = {
            (row["service"], row["month"]): assess_rules(
                rules, {r.name: row[f"fail__{r.name}"] for r in rules}, row["input_rows"]
            )
            for row in per_slice
        }
        input_rows = sum(row["input_rows"] for row in per_slice)
        log.info("curate.assessed", input_rows=input_rows)
        for row in per_slice:
            where = f"{source} ({row['service']} {row['month']})"
            raise_on_failed_rules(outcomes[row["service"], row["month"]], where, row["kept_rows"])

        lineage = {"run_id": F.lit(run_id), "curated_at": F.lit(started_at)}
        curated_obs = Observation("curated")
        curated = (
            valid_rows(trips, rules)
            .withColumns(lineage)
            .select(*columns(CURATED_DDL))
            .observe(curated_obs, F.count(F.lit(1)).alias("rows"))
        )
        quarantine_obs = Observation("quarantined")
        quarantined = (
            rejected_rows(trips, rules)
            .withColumns({"run_id": F.lit(run_id), "quarantined_at": F.lit(started_at)})
            .select(*columns(QUARANTINE_DDL))
            .observe(quarantine_obs, F.count(F.lit(1)).alias("rows"))
        )
        before = {
            path: table_version(spark, path) for path in (targets.curated, targets.quarantine)
        }
        replaced: list[Path] = []
        try:
            with spark_progress(spark, "curate.write", expected_rows=input_rows):
                replace_slices(curated, targets.curated, slices, MONTH_PARTITION, CLUSTER_BY)
                replaced.append(targets.curated)
                failpoint("curate.after_curated")
                replace_slices(quarantined, targets.quarantine, slices, MONTH_PARTITION, CLUSTER_BY)
                replaced.append(targets.quarantine)
                failpoint("curate.after_quarantine")
            output_rows = int(curated_obs.get["rows"])
            quarantined_rows = int(quarantine_obs.get["rows"])
            _check_conservation(source, input_rows, output_rows, quarantined_rows)

            finished_at = datetime.now(timezone.utc)
            totals = (input_rows, output_rows, quarantined_rows, started_at, finished_at)
            metrics = _metrics_rows(spark, run_id, outcomes, totals)
            replace_slices(metrics, targets.dq_metrics, slices, MONTH_PARTITION)
        except BaseException:
            _put_back(spark, replaced, before, slices, log)
            raise

        stats = {
            "run_id": run_id,
            "files": paths,
            "slices": slices,
            "input_rows": input_rows,
            "output_rows": output_rows,
            "quarantined_rows": quarantined_rows,
            "retention_rate": round(100.0 * output_rows / input_rows, 4) if input_rows else 100.0,
            "rejections": _failures_by_rule(outcomes, warn=False),
            "warnings": _failures_by_rule(outcomes, warn=True),
            "curated_path": str(targets.curated),
            "quarantine_path": str(targets.quarantine),
            "duration_sec": round(time.monotonic() - started, 3),
        }
        record.succeeded(stats, rows_read=input_rows, rows_written=output_rows + quarantined_rows)
        log.info("curate.finished", **{k: v for k, v in stats.items() if k != "files"})
        return stats


@contextmanager
def _locked_run(
    targets: CurateTargets,
    database_url: DatabaseUrl | None,
    slices: list[dict[str, str]],
    run_id: str,
) -> Iterator[RunRecord]:
    """Hold the slices' locks (and the table's, shared) and record the run in the ledger."""
    names = sorted(slice_lock(s["service"], s["month"]) for s in slices)
    period = ",".join(names)
    store = lake_locks(targets.curated, database_url, holder(CURATE_JOB, f"run {run_id}"))
    requests = [(TABLE_LOCK, True)] + [(name, False) for name in names]
    with (
        hold(store, requests, what=f"curate of {period} in {targets.curated}", writer=True),
        recorded_run(database_url, CURATE_JOB, period, run_id) as record,
    ):
        yield record


def _put_back(
    spark: SparkSession,
    replaced: list[Path],
    before: dict[Path, int | None],
    slices: list[dict[str, str]],
    log: structlog.BoundLogger,
) -> None:
    """Restore the slices the failed run committed; a failed restore is logged, not raised."""
    for path in reversed(replaced):
        try:
            restore_slices(spark, path, before[path], slices, MONTH_PARTITION, CLUSTER_BY)
            log.warning("curate.slices_restored", table=str(path), version=before[path])
        except Exception as exc:  # noqa: BLE001 - the run's error is raised by the caller
            log.error(
                "curate.restore_failed",
                table=str(path),
                error=type(exc).__name__,
                message=error_summary(exc),
            )


def _flagged_trips(
    spark: SparkSession, files: list[RawFile], settings: CurateSettings
) -> tuple[DataFrame, list[dict[str, str]]]:
    staged, slices = [], []
    for raw in files:
        rows, schema = read_raw_file(spark, raw)
        layout = plan_layout(schema, str(raw.path))
        staged.append(stage_trips(rows, layout, raw.month))
        slice_ = {"service": layout.service, "month": raw.month}
        if slice_ not in slices:
            slices.append(slice_)
    trips = reduce(DataFrame.unionByName, staged)
    months = [raw.month for raw in files]
    derived = trips.transform(with_derived_fields, settings.data_time_zone, months)
    return derived.transform(with_rule_results, settings.rules), slices


def _check_rules(spark: SparkSession, rules: tuple[QualityRule, ...]) -> None:
    """Resolve every predicate as curate evaluates them, before reading any data.

    Each must be a boolean condition on one row: Spark would cast a string's 'N' to false, and
    an aggregate fails only once the data is read.
    """
    empty = spark.createDataFrame([], struct(f"{STAGED_DDL}, {DERIVED_DDL}"))
    try:  # one analysis; each rule alone only to find the one to blame
        kinds = _predicate_types(empty, rules)
    except (AnalysisException, ParseException):
        kinds = None
    for index, rule in enumerate(rules):
        where = f"data-quality rule {rule.name!r}: predicate {rule.predicate!r}"
        try:
            kind = kinds[index] if kinds else _predicate_types(empty, (rule,))[0]
        except (AnalysisException, ParseException) as exc:
            raise ConfigError(
                f"{where} is not a valid Spark SQL expression over the curated columns: "
                f"{error_summary(exc)}"
            ) from None
        if not isinstance(kind, BooleanType):
            raise ConfigError(
                f"{where} is of type {kind.simpleString()}, not boolean: write a condition "
                "that is true for a valid row"
            )


def _predicate_types(empty: DataFrame, rules: tuple[QualityRule, ...]) -> list[Any]:
    """Analyse the rules' evaluation on ``empty``; return each predicate's own type."""
    empty.transform(with_rule_results, rules).schema  # noqa: B018 - forces analysis
    return [field.dataType for field in empty.select(*(F.expr(r.predicate) for r in rules)).schema]


def _check_conservation(source: str, input_rows: int, output_rows: int, quarantined: int) -> None:
    if input_rows != output_rows + quarantined:
        raise ConservationError(
            f"{source}: {input_rows} raw rows but {output_rows} curated + {quarantined} "
            f"quarantined = {output_rows + quarantined}; the input changed during the run "
            "or rows were lost — rerun the month"
        )


def _failures_by_rule(
    outcomes: dict[tuple[str, str], list[RuleOutcome]], *, warn: bool
) -> dict[str, int]:
    """Failed rows per rule over every slice, of the warn rules or of the rejecting ones."""
    totals: dict[str, int] = {}
    for o in chain.from_iterable(outcomes.values()):
        if (o.rule.action == "warn") == warn and o.failed:
            totals[o.rule.name] = totals.get(o.rule.name, 0) + o.failed
    return totals


def _metrics_rows(
    spark: SparkSession,
    run_id: str,
    outcomes: dict[tuple[str, str], list[RuleOutcome]],
    totals: tuple[int, int, int, datetime, datetime],
) -> DataFrame:
    """One row per slice and rule; the run totals are repeated on each row."""
    rows = [
        (
            run_id,
            service,
            month,
            o.rule.name,
            o.rule.action,
            o.rule.predicate,
            o.evaluated,
            o.failed,
            o.failure_rate,
            o.rule.max_failure_rate,
            o.status,
            *totals,
        )
        for (service, month), slice_outcomes in sorted(outcomes.items())
        for o in slice_outcomes
    ]
    return local_frame(spark, rows, DQ_METRICS_DDL)
