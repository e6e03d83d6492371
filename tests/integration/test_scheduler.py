"""BatchScheduler against a real PostgreSQL, with real child processes and a fake clock.

Jobs run through a fake ``spark-submit.sh`` (a tiny Python script named by ``spark_submit`` in
the schedule) that records its arguments and fails, waits or succeeds as each test needs; only
the last test submits real Spark jobs. Time is a FakeClock wherever the scheduler runs in this
process, so retries and schedules never wait for real.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chillflow.batch import BatchScheduler
from chillflow.generator import generate_month
from chillflow.scheduler import scheduler as scheduler_module
from chillflow.scheduler.config import parse_schedule
from chillflow.sections import DownloadSettings
from chillflow.storage.postgres import connect, init_schema
from tests.conftest import REPO_ROOT, create_database, drop_database
from tests.fake_clock import FakeClock

pytestmark = pytest.mark.postgres

HOST = os.uname().nodename
DAILY = {"name": "daily", "kind": "aggregate_daily", "cron": "0 2 * * *"}
MONTHLY = {"name": "monthly", "kind": "monthly_pipeline", "cron": "0 3 * * *"}
FAKE_SUBMIT = """\
#!{python}
import json, os, sys, time
from pathlib import Path

state = Path({state!r})
with (state / "calls.jsonl").open("a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
call = len((state / "calls.jsonl").read_text().splitlines())
"""
# Takes a job's (job, period) lock the way a scheduler does and holds it until stdin closes.
HOLD_LOCK = """\
import sys
from chillflow.database_url import parse_database_url
from chillflow.storage.locks import try_lock
from chillflow.storage.postgres import connect

with connect(parse_database_url(sys.argv[1])) as conn:
    conn.autocommit = True
    assert try_lock(conn, f"{sys.argv[2]}|{sys.argv[3]}")
    print("locked", flush=True)
    sys.stdin.read()
"""


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def scheduler_db(database_url):
    """A database of this module's own, so no other test's ops.job_run rows get in the way."""
    url = create_database(database_url, "chillflow_sched")
    with connect(url) as conn:
        init_schema(conn)
    yield url
    drop_database(database_url, url.dbname)


@pytest.fixture
def db(scheduler_db):
    with connect(scheduler_db) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE ops.job_run")
    return scheduler_db


@pytest.fixture
def submit_dir(tmp_path: Path) -> Path:
    path = tmp_path / "submit"
    path.mkdir()
    return path


@pytest.fixture
def make_submit(submit_dir: Path):
    """Write a fake spark-submit.sh: the common header, then ``body`` (``call`` counts from 1)."""

    def make(body: str) -> Path:
        script = submit_dir / "fake-spark-submit"
        header = FAKE_SUBMIT.format(python=sys.executable, state=str(submit_dir))
        script.write_text(header + textwrap.dedent(body))
        script.chmod(0o755)
        return script

    return make


def calls(submit_dir: Path) -> list[list[str]]:
    path = submit_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def make_scheduler(settings, db, tmp_path, submit, jobs, clock, **top):
    schedule = parse_schedule(
        {"jobs": jobs, "spark_submit": str(submit), "timezone": "America/New_York", **top},
        source="test",
        landing_dir=tmp_path / "landing",
    )
    return BatchScheduler(dataclasses.replace(settings, database_url=db), clock, schedule=schedule)


def rows(db: str, where: str = "TRUE") -> list[dict]:
    with connect(db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT job, period, attempt, status, pid, host, error, stats, started_at,"
            f" finished_at, run_id FROM ops.job_run WHERE {where} ORDER BY id"
        )
        names = [column.name for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def insert_running(db: str, job: str, period: str, pid: int, host: str) -> None:
    with connect(db) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ops.job_run (job, period, run_id, status, pid, host)"
            " VALUES (%s, %s, %s, 'running', %s, %s)",
            (job, period, secrets.token_hex(6), pid, host),
        )


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


class StoppingClock(FakeClock):
    """A fake clock that does ``actions`` (time, callable) once their time has come and stops the
    scheduler once it is asked to wait past ``stop_at``."""

    def __init__(self, start: datetime, stop_at: datetime, actions=()):
        super().__init__(start)
        self.stop_at = stop_at
        self.actions = sorted(actions, key=lambda action: action[0])
        self.scheduler: BatchScheduler | None = None

    def wait(self, seconds, until=None):
        if self.scheduler is not None and self.now() + timedelta(seconds=seconds) > self.stop_at:
            scheduler, self.scheduler = self.scheduler, None
            scheduler.stop()
        stopped = super().wait(seconds, until)
        while self.actions and self.actions[0][0] <= self.now():
            self.actions.pop(0)[1]()
        return stopped


# --- retries ---------------------------------------------------------------------------------


def test_failed_attempts_are_retried_with_backoff_until_one_succeeds(
    settings, db, tmp_path, make_submit, submit_dir
):
    submit = make_submit(
        """
        if call <= 2:
            print("25/03/08 WARN some Spark noise", file=sys.stderr)
            print("error: Spark failed: executor lost", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"hours_processed": 24}))
        """
    )
    job = {**DAILY, "retries": 3, "retry_backoff_sec": 30}
    clock = FakeClock(utc("2026-03-08T12:00"))
    scheduler = make_scheduler(settings, db, tmp_path, submit, [job], clock)

    outcome = scheduler.run_job("daily", "2026-03-07")

    assert (outcome["status"], outcome["attempts"], outcome["message"]) == ("succeeded", 3, None)
    assert clock.waits == [30.0, 60.0]  # exponential backoff, on the fake clock
    command = ["aggregate", "run", "--date", "2026-03-07", "--lookback-hours", "24", "--json"]
    assert calls(submit_dir) == [command] * 3
    history = rows(db)
    assert [(r["attempt"], r["status"]) for r in history] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert history[0]["error"] == "step aggregate exited with code 1: Spark failed: executor lost"
    assert history[2]["error"] is None
    assert history[2]["stats"]["steps"][0]["result"] == {"hours_processed": 24}
    assert [r["started_at"] for r in history] == [
        utc("2026-03-08T12:00"),
        utc("2026-03-08T12:00:30"),
        utc("2026-03-08T12:01:30"),
    ]
    assert {(r["job"], r["period"], r["pid"], r["host"]) for r in history} == {
        ("daily", "2026-03-07", os.getpid(), HOST)
    }
    assert len({r["run_id"] for r in history}) == 3
    log = Path(history[0]["stats"]["log_file"]).read_text()
    assert "executor lost" in log and str(submit) in log


def test_a_failure_that_a_retry_cannot_fix_is_not_retried(settings, db, tmp_path, make_submit):
    submit = make_submit(
        """
        print("error: raw.parquet: not a Parquet file", file=sys.stderr)
        sys.exit(3)
        """
    )
    clock = FakeClock(utc("2026-03-08T12:00"))
    job = {**DAILY, "retries": 3, "retry_backoff_sec": 30}
    scheduler = make_scheduler(settings, db, tmp_path, submit, [job], clock)

    outcome = scheduler.run_job("daily", "2026-03-07")

    assert (outcome["status"], outcome["attempts"]) == ("failed", 1)
    assert outcome["message"] == (
        "step aggregate exited with code 3 (SchemaError): raw.parquet: not a Parquet file"
    )
    assert clock.waits == []


# --- monthly pipeline and missing raw data ---------------------------------------------------


def test_monthly_job_loads_late_and_partial_months_when_their_files_arrive_or_change(
    settings, db, tmp_path, make_submit, submit_dir, monkeypatch
):
    monkeypatch.setattr(scheduler_module, "MAX_SLEEP_SEC", 3600.0)
    submit = make_submit('print(json.dumps({"step": sys.argv[1]}))\n')
    landing = tmp_path / "landing"
    landing.mkdir()
    yellow = landing / "yellow_tripdata_2026-02.parquet"
    green = landing / "green_tripdata_2026-02.parquet"
    # The checks run at 03:00 New York time (08:00 UTC); TLC publishes February days later,
    # yellow first, and replaces yellow once more.
    clock = StoppingClock(
        utc("2026-03-01T07:00"),
        stop_at=utc("2026-03-06T09:00"),
        actions=[
            (utc("2026-03-02T12:00"), lambda: yellow.write_bytes(b"yellow v1")),
            (utc("2026-03-03T12:00"), lambda: green.write_bytes(b"green")),
            (utc("2026-03-05T12:00"), lambda: yellow.write_bytes(b"yellow v2, redownloaded")),
        ],
    )
    scheduler = make_scheduler(
        settings, db, tmp_path, submit, [MONTHLY], clock, services=["yellow", "green"],
        missed_run_policy="skip",
    )  # fmt: skip
    clock.scheduler = scheduler

    scheduler.start()

    history = rows(db)
    watched = [f"{m}/{s}" for m in ("2025-12", "2026-01", "2026-02") for s in ("yellow", "green")]
    # Each awaited (month, service) is recorded once, on the first check, not every day.
    assert [(r["period"], r["status"], r["started_at"]) for r in history] == [
        *((period, "skipped", utc("2026-03-01T08:00")) for period in watched),
        ("2026-02/yellow", "succeeded", utc("2026-03-03T08:00")),
        ("2026-02/green", "succeeded", utc("2026-03-04T08:00")),
        ("2026-02/yellow", "succeeded", utc("2026-03-06T08:00")),
    ]
    assert (
        history[0]["error"]
        == f"raw file {landing / 'yellow_tripdata_2025-12.parquet'} has not arrived"
    )
    assert history[5]["stats"] == {"skip_reason": "raw_file_missing", "missing": [str(green)]}
    assert [r["stats"]["raw_file"]["size"] for r in history[6:]] == [9, 5, 23]
    assert history[6]["stats"]["raw_file"]["path"] == str(yellow)
    assert calls(submit_dir) == [
        ["pipeline", str(raw), "--month", "2026-02", "--json"] for raw in (yellow, green, yellow)
    ]
    (listed,) = scheduler.jobs()
    assert listed["awaiting"] == watched[:4]
    assert listed["next_run"] == "2026-03-07T03:00:00-05:00"


def test_the_monthly_job_downloads_a_missing_month_before_it_loads_it(
    settings, db, tmp_path, make_submit, submit_dir, server
):
    generated = generate_month(tmp_path / "tlc.parquet", service="green", month="2026-02", rows=50)
    server.files = {"green_tripdata_2026-02.parquet": generated.read_bytes()}
    download = DownloadSettings(
        base_url=server.base_url, attempts=1, backoff_sec=0.0, timeout_sec=10.0,
        progress_every_sec=0.0, before_monthly=True,
    )  # fmt: skip
    clock = StoppingClock(utc("2026-03-01T07:00"), stop_at=utc("2026-03-01T09:00"))
    scheduler = make_scheduler(
        dataclasses.replace(settings, download=download), db, tmp_path,
        make_submit('print(json.dumps({"step": sys.argv[1]}))\n'), [MONTHLY], clock,
        services=["green"], missed_run_policy="skip",
    )  # fmt: skip
    clock.scheduler = scheduler

    scheduler.start()

    landed = tmp_path / "landing" / "green_tripdata_2026-02.parquet"
    assert landed.read_bytes() == generated.read_bytes()
    # December and January are not on the server (404): they stay awaited.
    assert [(r["period"], r["status"]) for r in rows(db)] == [
        ("2025-12/green", "skipped"),
        ("2026-01/green", "skipped"),
        ("2026-02/green", "succeeded"),
    ]
    assert str(landed) in calls(submit_dir)[0]


def test_a_failed_month_is_retried_per_policy_then_at_the_next_daily_check(
    settings, db, tmp_path, make_submit, submit_dir, monkeypatch
):
    monkeypatch.setattr(scheduler_module, "MAX_SLEEP_SEC", 3600.0)
    submit = make_submit(
        """
        if sys.argv[1] == "pipeline" and (state / "broken").exists():
            print("error: Spark failed: executor lost", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"step": sys.argv[1]}))
        """
    )
    (submit_dir / "broken").touch()
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "green_tripdata_2026-02.parquet").write_bytes(b"green")
    clock = StoppingClock(
        utc("2026-03-01T07:00"),
        stop_at=utc("2026-03-03T09:00"),
        actions=[(utc("2026-03-01T12:00"), (submit_dir / "broken").unlink)],
    )
    job = {**MONTHLY, "watch_months": 1, "retries": 1, "retry_backoff_sec": 600}
    scheduler = make_scheduler(
        settings, db, tmp_path, submit, [job], clock, services=["green"], missed_run_policy="skip"
    )
    clock.scheduler = scheduler

    scheduler.start()

    assert [(r["period"], r["attempt"], r["status"], r["started_at"]) for r in rows(db)] == [
        ("2026-02/green", 1, "failed", utc("2026-03-01T08:00")),
        ("2026-02/green", 2, "failed", utc("2026-03-01T08:10")),
        ("2026-02/green", 1, "succeeded", utc("2026-03-02T08:00")),
    ]
    assert [call[0] for call in calls(submit_dir)] == ["pipeline"] * 3


def test_a_month_given_by_hand_reloads_each_arrived_service(
    settings, db, tmp_path, make_submit, submit_dir
):
    submit = make_submit('print(json.dumps({"step": sys.argv[1]}))\n')
    clock = FakeClock(utc("2026-03-10T12:00"))
    scheduler = make_scheduler(
        settings, db, tmp_path, submit, [MONTHLY], clock, services=["yellow", "green"]
    )
    (tmp_path / "landing").mkdir()
    yellow = tmp_path / "landing" / "yellow_tripdata_2026-02.parquet"
    yellow.write_bytes(b"yellow")
    green = tmp_path / "landing" / "green_tripdata_2026-02.parquet"
    first = scheduler.run_job("monthly", "2026-02/yellow")

    again = scheduler.run_job("monthly", "2026-02")

    assert first["status"] == "succeeded"
    assert (again["period"], again["status"], again["attempts"]) == ("2026-02", "succeeded", 1)
    assert again["periods"] == [
        {"period": "2026-02/yellow", "status": "succeeded", "attempts": 1, "message": None},
        {
            "period": "2026-02/green",
            "status": "awaited",
            "attempts": 0,
            "message": f"raw file {green} has not arrived",
        },
    ]
    assert [(r["period"], r["status"]) for r in rows(db)] == [
        ("2026-02/yellow", "succeeded"),
        ("2026-02/yellow", "succeeded"),
        ("2026-02/green", "skipped"),
    ]
    # Without a period: the daily check. Yellow is loaded from this very file, green is awaited
    # already; the four periods of the older watched months are recorded once as awaited.
    checked = scheduler.run_job("monthly")
    assert [(p["period"], p["status"]) for p in checked["periods"]][-2:] == [
        ("2026-02/yellow", "skipped"),
        ("2026-02/green", "awaited"),
    ]
    assert checked["status"] == "skipped" and checked["attempts"] == 0
    assert len(rows(db)) == 3 + 4
    assert len(calls(submit_dir)) == 2


def test_a_retry_of_the_monthly_pipeline_resumes_at_the_step_that_failed(
    settings, db, tmp_path, make_submit, submit_dir
):
    submit = make_submit(
        """
        if sys.argv[1] == "process-trips" and call == 2:
            print("error: cannot connect to PostgreSQL at db:5432", file=sys.stderr)
            sys.exit(6)
        print(json.dumps({"step": sys.argv[1]}))
        """
    )
    clock = FakeClock(utc("2026-03-01T08:00"))
    job = {**MONTHLY, "retries": 1, "retry_backoff_sec": 120}
    # Stages named one by one run one process each, and a retry resumes among them.
    steps = ["curate", "process-trips"]
    scheduler = make_scheduler(settings, db, tmp_path, submit, [job], clock, monthly_steps=steps)
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "yellow_tripdata_2026-02.parquet").touch()

    outcome = scheduler.run_job("monthly", "2026-02")

    assert (outcome["status"], outcome["attempts"]) == ("succeeded", 2)
    assert [call[0] for call in calls(submit_dir)] == ["curate", "process-trips", "process-trips"]
    first, second = rows(db)
    assert first["error"] == (
        "step process-trips:yellow exited with code 6 (DatabaseError): "
        "cannot connect to PostgreSQL at db:5432"
    )
    assert [step["step"] for step in first["stats"]["steps"]] == [
        "curate:yellow",
        "process-trips:yellow",
    ]
    assert [step["step"] for step in second["stats"]["steps"]] == ["process-trips:yellow"]
    assert clock.waits == [120.0]


# --- stale runs and locks held by other processes -------------------------------------------


def test_runs_left_running_by_dead_schedulers_are_marked_failed(
    settings, db, tmp_path, make_submit
):
    submit = make_submit('print("{}")\n')
    clock = FakeClock(utc("2026-03-08T12:00"))
    scheduler = make_scheduler(settings, db, tmp_path, submit, [DAILY], clock)
    gone = dead_pid()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, db.url(), "daily", "2026-03-06"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        insert_running(db, "daily", "2026-03-05", gone, HOST)  # its scheduler died here
        insert_running(db, "daily", "2026-03-06", holder.pid, HOST)  # alive: holds the lock
        insert_running(db, "daily", "2026-03-04", 4242, "elsewhere")  # lock free: session gone
        insert_running(db, "aggregate", "2026-03-05", gone, HOST)  # a stage's row: not ours

        marked = scheduler.recover_stale_runs()

        assert {run["period"]: run["error"] for run in marked} == {
            "2026-03-05": (f"abandoned: process {gone} on {HOST} exited without finishing the run"),
            "2026-03-04": (
                "abandoned: no process holds the run's lock any more (process 4242 on "
                "elsewhere or its database session ended)"
            ),
        }
        assert {(r["job"], r["period"]): r["status"] for r in rows(db)} == {
            ("daily", "2026-03-05"): "failed",
            ("daily", "2026-03-06"): "running",
            ("daily", "2026-03-04"): "failed",
            ("aggregate", "2026-03-05"): "running",
        }
        assert rows(db, "period = '2026-03-04'")[0]["finished_at"] == utc("2026-03-08T12:00")

        contended = scheduler.run_job("daily", "2026-03-06")

        assert contended["status"] == "skipped"
        holder_run = rows(db, "period = '2026-03-06'")[0]["run_id"]
        assert contended["message"] == (
            f"daily 2026-03-06 is already running: run {holder_run} on {HOST} "
            f"(pid {holder.pid}) holds its lock"
        )
        assert contended["runs"][0]["stats"] == {"skip_reason": "locked"}
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

    (marked,) = scheduler.recover_stale_runs()
    assert marked["period"] == "2026-03-06"
    assert marked["error"].startswith(f"abandoned: process {holder.pid} on {HOST}")


def test_a_run_finds_and_marks_a_stale_row_of_its_own_period(settings, db, tmp_path, make_submit):
    submit = make_submit('print("{}")\n')
    scheduler = make_scheduler(
        settings, db, tmp_path, submit, [DAILY], FakeClock(utc("2026-03-08T12:00"))
    )
    gone = dead_pid()
    insert_running(db, "daily", "2026-03-07", gone, HOST)

    outcome = scheduler.run_job("daily", "2026-03-07")

    assert outcome["status"] == "succeeded"
    assert [(r["status"], r["pid"]) for r in rows(db)] == [
        ("failed", gone),
        ("succeeded", os.getpid()),
    ]


# --- the loop, with a fake clock --------------------------------------------------------------


HOURLY = {"name": "hourly", "kind": "aggregate_hourly", "cron": "5 * * * *"}


def run_hourly_loop(settings, db, tmp_path, submit, start, stop_at, **top):
    clock = StoppingClock(utc(start), stop_at=utc(stop_at))
    scheduler = make_scheduler(settings, db, tmp_path, submit, [HOURLY], clock, **top)
    clock.scheduler = scheduler
    scheduler.start()
    return scheduler


def windows(submit_dir: Path) -> list[tuple[str, str]]:
    """The --until and --lookback-hours of each ``aggregate run`` the jobs were given."""
    found = []
    for call in calls(submit_dir):
        options = dict(zip(call[2::2], call[3::2], strict=False))
        found.append((options.get("--until"), options.get("--lookback-hours")))
    return found


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Started 25 minutes after the 04:05 UTC run: run_latest catches it up, skip drops it.
        (
            "run_latest",
            [
                ("2026-03-07T22:00-05:00", "2026-03-08T04:30", "2026-03-07T23"),
                ("2026-03-07T23:00-05:00", "2026-03-08T05:05", "2026-03-08T00"),
                ("2026-03-08T01:00-05:00", "2026-03-08T07:05", "2026-03-08T02"),
                ("2026-03-08T03:00-04:00", "2026-03-08T08:05", "2026-03-08T04"),
            ],
        ),
        (
            "skip",
            [
                ("2026-03-07T23:00-05:00", "2026-03-08T05:05", "2026-03-08T00"),
                ("2026-03-08T01:00-05:00", "2026-03-08T07:05", "2026-03-08T02"),
                ("2026-03-08T03:00-04:00", "2026-03-08T08:05", "2026-03-08T04"),
            ],
        ),
    ],
)
def test_loop_runs_each_hour_across_the_spring_change_and_applies_the_missed_run_policy(
    settings, db, tmp_path, make_submit, submit_dir, policy, expected
):
    submit = make_submit('print(json.dumps({"ok": True}))\n')
    # Another scheduler already did 00:00 EST (05:00 UTC): this one must not run it again.
    with connect(db) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ops.job_run (job, period, run_id, status, finished_at)"
            " VALUES ('hourly', '2026-03-08T00:00-05:00', 'elsewhere', 'succeeded', now())"
        )

    # New York jumps from 02:00 EST to 03:00 EDT at 07:00 UTC: wall-clock 02:00 never happens.
    scheduler = run_hourly_loop(
        settings, db, tmp_path, submit, "2026-03-08T04:30", "2026-03-08T08:30",
        missed_run_policy=policy,
    )  # fmt: skip

    ran = rows(db, "run_id <> 'elsewhere'")
    assert [(r["period"], r["status"], r["started_at"]) for r in ran] == [
        (period, "succeeded", utc(started)) for period, started, _ in expected
    ]
    # Each window is the wall-clock hour that just ended and the one before it (lookback 2).
    assert windows(submit_dir) == [(until, "2") for _, _, until in expected]
    (listed,) = scheduler.jobs()
    assert listed["next_run"] == "2026-03-08T05:05:00-04:00"
    assert (listed["last_run"]["period"], listed["last_run"]["status"]) == (
        "2026-03-08T03:00-04:00",
        "succeeded",
    )


def test_loop_runs_both_passes_through_the_repeated_autumn_hour(
    settings, db, tmp_path, make_submit, submit_dir
):
    submit = make_submit('print(json.dumps({"ok": True}))\n')

    # New York falls back from 02:00 EDT to 01:00 EST at 06:00 UTC: 01:00 happens twice.
    run_hourly_loop(settings, db, tmp_path, submit, "2026-11-01T04:30", "2026-11-01T08:30")

    assert [(r["period"], r["status"], r["started_at"]) for r in rows(db)] == [
        ("2026-10-31T23:00-04:00", "succeeded", utc("2026-11-01T04:30")),
        ("2026-11-01T00:00-04:00", "succeeded", utc("2026-11-01T05:05")),
        ("2026-11-01T01:00-04:00", "succeeded", utc("2026-11-01T06:05")),
        ("2026-11-01T01:00-05:00", "succeeded", utc("2026-11-01T07:05")),
        ("2026-11-01T02:00-05:00", "succeeded", utc("2026-11-01T08:05")),
    ]
    # Both passes recompute wall-clock 01:00, where the trips of both are; the second has all.
    assert windows(submit_dir) == [
        ("2026-11-01T00", "2"),
        ("2026-11-01T01", "2"),
        ("2026-11-01T02", "2"),
        ("2026-11-01T02", "2"),
        ("2026-11-01T03", "2"),
    ]


def test_the_hourly_job_at_ten_past_ten_in_new_york_aggregates_nine_to_ten(
    settings, db, tmp_path, make_submit, submit_dir
):
    submit = make_submit('print(json.dumps({"ok": True}))\n')
    clock = FakeClock(datetime.fromisoformat("2025-03-10T10:05:00-04:00"))
    scheduler = make_scheduler(settings, db, tmp_path, submit, [HOURLY], clock)

    outcome = scheduler.run_job("hourly")

    (call,) = calls(submit_dir)
    # The hours the command recomputes, by the documented meaning of aggregate run's options.
    options = dict(zip(call[2::2], call[3::2], strict=False))
    if "--until" in options:
        end = datetime.fromisoformat(options["--until"] + ":00")
    else:
        end = datetime.fromisoformat(options["--date"]) + timedelta(days=1)
    start = end - timedelta(hours=int(options["--lookback-hours"]))
    assert start <= datetime(2025, 3, 10, 9) and end == datetime(2025, 3, 10, 10)
    assert (outcome["period"], outcome["status"]) == ("2025-03-10T09:00-04:00", "succeeded")


# --- separate processes: the CLI, lock contention, signals ------------------------------------


def toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)


def cli_env(tmp_path: Path, db: str, jobs: list[dict], **top) -> dict[str, str]:
    """Environment for ``python -m chillflow`` with a conf/ whose schedules.toml is ``jobs``."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf, dirs_exist_ok=True)
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    for job in jobs:
        lines += ["", "[[jobs]]", *(f"{key} = {toml_value(value)}" for key, value in job.items())]
    (conf / "schedules.toml").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHILLFLOW_", "SPARK_"))}
    env.update(
        {
            "CHILLFLOW_CONF_DIR": str(conf),
            "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": db.url(),
            "LOG_LEVEL": "INFO",
        }
    )
    return env


def chillflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "chillflow", *args]


def test_two_scheduler_processes_never_run_the_same_period_twice(
    db, tmp_path, make_submit, submit_dir
):
    submit = make_submit(
        """
        (state / "started").touch()
        deadline = time.monotonic() + 60
        while not (state / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(json.dumps({"hours_processed": 24}))
        """
    )
    env = cli_env(tmp_path, db, [DAILY], spark_submit=str(submit))
    command = chillflow("schedule", "run", "daily", "--period", "2026-03-07", "--json")
    first = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(submit_dir / "started")

        second = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        (submit_dir / "release").touch()
        first_out, first_err = first.communicate(timeout=60)

    assert second.returncode == 0, second.stderr[-2000:]
    lost = json.loads(second.stdout)
    assert first.returncode == 0, first_err[-2000:]
    won = json.loads(first_out)
    assert won["status"] == "succeeded"
    assert lost["status"] == "skipped"
    assert lost["message"] == (
        f"daily 2026-03-07 is already running: run {won['runs'][0]['run_id']} on {HOST} "
        f"(pid {first.pid}) holds its lock"
    )
    assert len(calls(submit_dir)) == 1

    history = subprocess.run(
        chillflow("schedule", "runs", "--job", "daily", "--json"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert history.returncode == 0, history.stderr[-2000:]
    runs = json.loads(history.stdout)["runs"]
    assert [(r["period"], r["status"]) for r in runs] == [
        ("2026-03-07", "skipped"),
        ("2026-03-07", "succeeded"),
    ]
    assert runs[0]["stats"] == {"skip_reason": "locked"}
    assert runs[1]["pid"] == first.pid
    assert runs[1]["stats"]["steps"][0]["result"] == {"hours_processed": 24}

    listed = subprocess.run(
        chillflow("schedule", "jobs"), cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    header, line = listed.stdout.splitlines()
    assert header.split() == [
        "job",
        "cron",
        "timezone",
        "next_run",
        "last_period",
        "last_status",
        "awaiting",
    ]
    # The contention record is no outcome of the job: the last outcome is the run that won.
    assert line.split()[-3:] == ["2026-03-07", "succeeded", "-"]


@pytest.mark.parametrize(
    ("signals", "grace_sec", "job_sec", "status"),
    [
        ([signal.SIGTERM], 1, 120, "cancelled"),  # the job outlives the grace period
        ([signal.SIGTERM], 60, 1.5, "succeeded"),  # the job ends within it: let finish
        ([signal.SIGINT, signal.SIGINT], 600, 120, "cancelled"),  # asked twice: at once
    ],
    ids=["grace-over", "job-ends-in-grace", "second-signal"],
)
def test_signals_stop_the_scheduler_cleanly(
    db, tmp_path, make_submit, submit_dir, signals, grace_sec, job_sec, status
):
    submit = make_submit(
        f"""
        (state / "pid").write_text(str(os.getpid()))
        time.sleep({job_sec})
        print(json.dumps({{"slept": {job_sec}}}))
        """
    )
    # run_latest with an empty history: yesterday's daily run is due the moment it starts.
    env = cli_env(
        tmp_path,
        db,
        [DAILY],
        spark_submit=str(submit),
        missed_run_policy="run_latest",
        shutdown_grace_sec=grace_sec,
    )
    log = tmp_path / "scheduler.log"
    with log.open("w") as stderr:
        scheduler = subprocess.Popen(
            chillflow("schedule", "start"), cwd=REPO_ROOT, env=env, stderr=stderr
        )
        try:
            wait_for(submit_dir / "pid")
            for signum in signals:
                scheduler.send_signal(signum)
                time.sleep(0.3)
            exit_code = scheduler.wait(timeout=60)
        finally:
            if scheduler.poll() is None:
                scheduler.kill()

    assert exit_code == 0, log.read_text()[-3000:]
    (run,) = rows(db)
    assert (run["job"], run["status"]) == ("daily", status)
    if status == "cancelled":
        assert run["error"] == "step aggregate was cancelled"
    assert len(calls(submit_dir)) == 1  # no job started after the signal
    with pytest.raises(ProcessLookupError):
        os.kill(int((submit_dir / "pid").read_text()), 0)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line[:1] == "{"]
    assert events[-1] == "schedule.stopped"
    assert "schedule.stopping" in events


def test_an_idle_scheduler_stops_at_once_on_sigterm(db, tmp_path, make_submit, submit_dir):
    submit = make_submit('print("{}")\n')
    # skip with no grace: the latest daily run is missed, so nothing runs until tomorrow.
    env = cli_env(
        tmp_path,
        db,
        [DAILY],
        spark_submit=str(submit),
        missed_run_policy="skip",
        misfire_grace_sec=0,
    )
    log = tmp_path / "scheduler.log"
    with log.open("w") as stderr:
        scheduler = subprocess.Popen(
            chillflow("schedule", "start"), cwd=REPO_ROOT, env=env, stderr=stderr
        )
        try:
            deadline = time.monotonic() + 60
            while "schedule.missed" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            time.sleep(0.3)  # into the wait for the next fire time
            started = time.monotonic()
            scheduler.send_signal(signal.SIGTERM)
            exit_code = scheduler.wait(timeout=30)
        finally:
            if scheduler.poll() is None:
                scheduler.kill()

    assert exit_code == 0, log.read_text()[-3000:]
    assert time.monotonic() - started < 10
    assert rows(db) == [] and calls(submit_dir) == []


# --- end to end: real spark-submit.sh --------------------------------------------------------


def test_monthly_pipeline_runs_the_pipeline_through_spark_submit(db, tmp_path):
    landing = tmp_path / "landing"
    raw = generate_month(landing / "yellow_tripdata_2025-03.parquet", month="2025-03", rows=2000)
    env = cli_env(tmp_path, db, [MONTHLY], landing_dir=str(landing), services=["yellow", "green"])
    env.update({"SPARK_MASTER": "local[2]", "DRIVER_MEMORY": "2g", "SHUFFLE_PARTITIONS": "2"})

    done = subprocess.run(
        chillflow("schedule", "run", "monthly", "--period", "2025-03", "--json"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert (outcome["status"], outcome["attempts"]) == ("succeeded", 1)
    assert [(p["period"], p["status"]) for p in outcome["periods"]] == [
        ("2025-03/yellow", "succeeded"),
        ("2025-03/green", "awaited"),
    ]
    stats = outcome["runs"][0]["stats"]
    assert stats["raw_file"]["path"] == str(raw)
    (step,) = stats["steps"]
    assert step["step"] == "pipeline:yellow" and str(raw) in step["command"]
    result = step["result"]
    curated = result["curate"]
    assert curated["input_rows"] == 2000
    assert curated["input_rows"] == curated["output_rows"] + curated["quarantined_rows"]
    assert (tmp_path / "data" / "lake" / "curated" / "trips" / "_delta_log").is_dir()
    row, awaited = rows(db, "job = 'monthly'")
    assert (row["period"], row["status"]) == ("2025-03/yellow", "succeeded")
    assert (awaited["period"], awaited["status"]) == ("2025-03/green", "skipped")
    stage_runs = rows(db, "job IN ('curate', 'process_trips', 'aggregate')")
    assert [(r["job"], r["status"]) for r in stage_runs] == [
        ("curate", "succeeded"),
        ("process_trips", "succeeded"),
        ("aggregate", "succeeded"),
    ]
    with connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM stg.complete_trip WHERE pickup_month = '2025-03'")
        trips = cur.fetchone()[0]
        cur.execute("SELECT count(*), coalesce(sum(trips), 0) FROM mart.zone_hourly_kpis")
        kpi_rows, kpi_trips = cur.fetchone()
    assert 0 < trips == result["process_trips"]["postgres_rows"] <= curated["output_rows"]
    assert kpi_rows > 0 and kpi_trips == trips
