"""``python -m chillflow schedule plan`` as a real process, on the shipped conf/schedules.toml."""

from __future__ import annotations

import json
import os

from tests.conftest import REPO_ROOT, run_chillflow

SUBMIT = str(REPO_ROOT / "spark-submit.sh")


def test_plan_shows_the_due_jobs_periods_and_commands_without_a_database(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    yellow = landing / "yellow_tripdata_2025-03.parquet"
    yellow.write_bytes(b"PAR1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHILLFLOW_", "SPARK_"))}
    # Nothing listens there: the plan must not need PostgreSQL.
    env.update(
        DATABASE_URL="postgresql://nobody:secret@127.0.0.1:9/none",
        CHILLFLOW_DATA_DIR=str(tmp_path / "data"),
        CHILLFLOW_LANDING_DIR=str(landing),
    )

    def plan(*args):
        return run_chillflow("schedule", "plan", *args, env=env)

    hourly = plan("--at", "2025-03-10T10:05:00-04:00", "--json")
    monthly = plan("--at", "2025-04-02T07:00:30Z")
    naive = plan("--at", "2025-03-10T10:05")
    distant = plan("--at", "0001-01-01T00:05:00+00:00")  # New York's time of it is before year 1
    weekly = plan("--at", "2025-03-16T04:00:00-04:00", "--json")

    assert weekly.returncode == 0, weekly.stderr[-2000:]
    assert json.loads(weekly.stdout)["jobs"] == [
        {
            "job": "weekly_maintenance",
            "kind": "maintain",
            "fire_time": "2025-03-16T04:00:00-04:00",
            "runs": [{"period": "2025-03-16", "commands": [[SUBMIT, "maintain", "--json"]]}],
        }
    ]
    assert hourly.returncode == 0, hourly.stderr[-2000:]
    assert json.loads(hourly.stdout) == {
        "at": "2025-03-10T10:05:00-04:00",
        "jobs": [
            {
                "job": "aggregate_hourly",
                "kind": "aggregate_hourly",
                "fire_time": "2025-03-10T10:05:00-04:00",
                "runs": [
                    {
                        "period": "2025-03-10T09:00-04:00",
                        "commands": [
                            [SUBMIT, "aggregate", "run", "--until", "2025-03-10T10",
                             "--lookback-hours", "2", "--json"],
                        ],
                    }
                ],
            }
        ],
        "note": None,
    }  # fmt: skip
    assert monthly.returncode == 0, monthly.stderr[-2000:]
    *lines, note = monthly.stdout.splitlines()
    awaiting = [
        f"  period {month}/{service}: awaiting {landing / f'{service}_tripdata_{month}.parquet'}"
        for month in ("2025-01", "2025-02")
        for service in ("yellow", "green")
    ]
    assert lines == [
        "at 2025-04-02T07:00:30+00:00: 1 job(s) due",
        "monthly_pipeline (fires 2025-04-02T03:00:00-04:00)",
        *awaiting,
        "  period 2025-03/yellow",
        f"    $ {SUBMIT} pipeline {yellow} --month 2025-03 --json",
        f"  period 2025-03/green: awaiting {landing / 'green_tripdata_2025-03.parquet'}",
    ]
    assert note.startswith("note: raw files as the landing directory holds them now (")
    for refused, at in ((naive, "2025-03-10T10:05"), (distant, "0001-01-01T00:05:00+00:00")):
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith(
            f"error: --at '{at}': expected an ISO 8601 time with its UTC offset in the years "
            "1900-2999, e.g. 2025-03-10T10:05:00-04:00"
        )
    assert "secret" not in hourly.stderr + monthly.stderr + naive.stderr
