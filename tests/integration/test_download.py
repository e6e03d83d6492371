"""``chillflow download`` against a real HTTP server on 127.0.0.1 that misbehaves on request."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest
from structlog.testing import capture_logs

from chillflow.errors import BusyError, ConfigError, DependencyError, NotPublishedError, SchemaError
from chillflow.generator import generate_month
from chillflow.sections import DownloadSettings
from chillflow.storage.raw import find_raw_files
from chillflow.storage.tlc_download import download_month
from tests.conftest import REPO_ROOT
from tests.tlc_server import TlcServer, etag_of

YELLOW = "yellow_tripdata_2025-01.parquet"
GREEN = "green_tripdata_2025-01.parquet"


@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tlc")
    return {
        name: generate_month(
            folder / name, service=service, month="2025-01", rows=rows
        ).read_bytes()
        for name, service, rows in (
            (YELLOW, "yellow", 300),
            (GREEN, "green", 200),
            ("yellow-other", "yellow", 310),
        )
    }


def settings_for(server: TlcServer, **changes) -> DownloadSettings:
    values = {"attempts": 3, "backoff_sec": 0.05, "timeout_sec": 1.0, "progress_every_sec": 0}
    return DownloadSettings(base_url=server.base_url, **{**values, **changes})


def test_cli_fetches_a_range_with_progress_skips_it_again_and_reports_unpublished_months(
    server, parquet, tmp_path
):
    server.files = {YELLOW: parquet[YELLOW], GREEN: parquet[GREEN]}
    server.forbidden = {"green_tripdata_2025-02.parquet"}
    conf = shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    toml = (conf / "chillflow.toml").read_text()
    (conf / "chillflow.toml").write_text(
        toml.replace("progress_every_sec = 5.0", "progress_every_sec = 0")
    )
    landing = tmp_path / "data/landing"
    env = {
        **os.environ,
        "CHILLFLOW_CONF_DIR": str(conf),
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "CHILLFLOW_TLC_BASE_URL": server.base_url + "/",
        "LOG_LEVEL": "INFO",
    }
    cli = [sys.executable, "-m", "chillflow", "download"]

    def run(*args):
        return subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    first = run("--start", "2025-01", "--end", "2025-02", "--json")

    assert first.returncode == 11, first.stderr[-3000:]
    files = json.loads(first.stdout)["files"]
    assert [(f["service"], f["month"], f["status"]) for f in files] == [
        ("yellow", "2025-01", "downloaded"),
        ("green", "2025-01", "downloaded"),
        ("yellow", "2025-02", "missing"),
        ("green", "2025-02", "missing"),
    ]
    assert files[0]["path"] == str(landing / YELLOW)
    assert (files[0]["bytes"], files[0]["etag"]) == (len(parquet[YELLOW]), etag_of(parquet[YELLOW]))
    assert (landing / YELLOW).read_bytes() == parquet[YELLOW]
    assert (landing / GREEN).read_bytes() == parquet[GREEN]
    assert sorted(p.name for p in landing.iterdir()) == sorted(
        [YELLOW, GREEN, f".{YELLOW}.etag", f".{GREEN}.etag"]
    )
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: yellow 2025-02 is not published at {server.base_url}/"
        "yellow_tripdata_2025-02.parquet (HTTP 404)",
        f"error: green 2025-02 is not published at {server.base_url}/"
        "green_tripdata_2025-02.parquet (HTTP 403)",
    ]
    assert "Traceback" not in first.stderr
    events = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "download.progress"]
    assert {(e["service"], e["bytes_total"]) for e in progress} == {
        ("yellow", len(parquet[YELLOW])),
        ("green", len(parquet[GREEN])),
    }
    assert all(e["job"] == "download" for e in progress)

    requests_before = len(server.requests)
    again = run("--service", "yellow", "--month", "2025-01")

    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split() == ["skipped", "yellow", "2025-01", str(landing / YELLOW)]
    assert [r[1:3] for r in server.requests[requests_before:]] == [("HEAD", YELLOW)]


def test_a_truncated_body_is_refused_and_the_next_run_resumes_it(server, parquet, tmp_path):
    data = parquet[YELLOW]
    server.files = {YELLOW: data}
    server.faults = {YELLOW: ["truncate", "truncate"]}
    half = len(data) // 2
    three_quarters = half + (len(data) - half) // 2

    with pytest.raises(DependencyError, match=f"yellow 2025-01: .*{YELLOW} failed 2 times"):
        download_month("yellow", "2025-01", tmp_path, settings_for(server, attempts=2))

    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{YELLOW}.part.etag", f"{YELLOW}.part"]
    assert (tmp_path / f"{YELLOW}.part").stat().st_size == three_quarters
    assert [r[3] for r in server.gets(YELLOW)] == [None, f"bytes={half}-"]
    with pytest.raises(ConfigError, match="no raw Parquet file found"):
        find_raw_files(tmp_path)  # what curate reads: the partial is not a raw file

    result = download_month("yellow", "2025-01", tmp_path, settings_for(server))

    assert (result["status"], result["bytes"]) == ("resumed", len(data))
    assert server.gets(YELLOW)[-1][3] == f"bytes={three_quarters}-"
    assert (tmp_path / YELLOW).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{YELLOW}.etag", YELLOW]


def test_a_changed_file_restarts_a_stale_partial_and_replaces_the_landed_copy(
    server, parquet, tmp_path
):
    old, new = parquet[YELLOW], parquet["yellow-other"]
    server.files = {YELLOW: old}
    assert download_month("yellow", "2025-01", tmp_path, settings_for(server))["status"] == (
        "downloaded"
    )
    (tmp_path / f"{YELLOW}.part").write_bytes(b"stale")
    assert download_month("yellow", "2025-01", tmp_path, settings_for(server))["status"] == (
        "skipped"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{YELLOW}.etag", YELLOW]
    (tmp_path / f"{YELLOW}.part").write_bytes(old[:100])
    (tmp_path / f".{YELLOW}.part.etag").write_text(etag_of(old))
    server.files = {YELLOW: new}

    result = download_month("yellow", "2025-01", tmp_path, settings_for(server))

    assert (result["status"], result["etag"]) == ("downloaded", etag_of(new))
    assert [r[3] for r in server.gets(YELLOW)] == [None, None]
    assert (tmp_path / YELLOW).read_bytes() == new
    assert (tmp_path / f".{YELLOW}.etag").read_text() == etag_of(new)
    assert not (tmp_path / f"{YELLOW}.part").exists()


def test_server_errors_and_timeouts_are_retried_with_doubling_backoff(server, parquet, tmp_path):
    server.files = {YELLOW: parquet[YELLOW]}
    server.faults = {YELLOW: ["500", "slow"]}
    conf = settings_for(server, backoff_sec=0.2, timeout_sec=0.5)

    with capture_logs() as logs:
        result = download_month("yellow", "2025-01", tmp_path, conf)

    assert result["status"] == "downloaded"
    assert (tmp_path / YELLOW).read_bytes() == parquet[YELLOW]
    retries = [e for e in logs if e["event"] == "download.retry"]
    assert [(e["attempt"], e["wait_sec"]) for e in retries] == [(1, 0.2), (2, 0.4)]
    assert retries[0]["error"] == "HTTP 500"
    assert "timed out" in retries[1]["error"]
    get_times = [r[0] for r in server.gets(YELLOW)]
    assert get_times[1] - get_times[0] >= 0.2
    assert get_times[2] - get_times[1] >= 0.5 + 0.4

    server.faults = {YELLOW: ["500"] * 3}
    other = tmp_path / "other"
    with pytest.raises(DependencyError, match="failed 3 times, last: HTTP 500") as failed:
        download_month("yellow", "2025-01", other, settings_for(server))
    assert failed.value.exit_code == 8
    assert list(other.iterdir()) == []


def test_a_body_longer_than_the_file_is_refused_and_fetched_again(server, parquet, tmp_path):
    data = parquet[YELLOW]
    server.files = {YELLOW: data}
    server.faults = {YELLOW: ["range-from-0"]}
    (tmp_path / f"{YELLOW}.part").write_bytes(data[:100])
    (tmp_path / f".{YELLOW}.part.etag").write_text(etag_of(data))

    with capture_logs() as logs:
        result = download_month("yellow", "2025-01", tmp_path, settings_for(server))

    assert result["status"] == "downloaded"
    retries = [e["error"] for e in logs if e["event"] == "download.retry"]
    assert retries == [f"got {100 + len(data)} bytes of a {len(data)}-byte file"]
    assert [r[3] for r in server.gets(YELLOW)] == ["bytes=100-", None]
    assert (tmp_path / YELLOW).read_bytes() == data


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("html", f"{YELLOW}: not a readable Parquet file"),
        (GREEN, f"{YELLOW}: holds green trips, expected yellow"),
    ],
)
def test_a_body_that_is_not_the_services_parquet_is_refused(
    server, parquet, tmp_path, body, message
):
    page = b"<html><body>Service unavailable, try later</body></html>"
    server.files = {YELLOW: page if body == "html" else parquet[body]}

    with pytest.raises(SchemaError, match=message) as refused:
        download_month("yellow", "2025-01", tmp_path, settings_for(server))

    assert refused.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []
    assert len(server.gets(YELLOW)) == 1


def test_an_unpublished_month_is_not_retried(server, tmp_path):
    server.forbidden = {YELLOW}

    with pytest.raises(NotPublishedError) as missing:
        download_month("yellow", "2025-01", tmp_path, settings_for(server))

    assert str(missing.value) == (
        f"yellow 2025-01 is not published at {server.base_url}/{YELLOW} (HTTP 403)"
    )
    assert missing.value.exit_code == 11
    assert [r[1] for r in server.requests] == ["HEAD"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2025-13"], "invalid month '2025-13'"),
        (["--start", "2025-03", "--end", "2025-01"], "--start 2025-03 is after --end 2025-01"),
        (["--start", "2025-03"], "give either --month YYYY-MM or both --start"),
        (["--month", "2025-01", "--service", "fhv"], "--service 'fhv': expected one of"),
    ],
)
def test_invalid_arguments_exit_2_before_any_request(args, message):
    from typer.testing import CliRunner

    from chillflow.cli import app

    done = CliRunner().invoke(app, ["download", *args])

    assert done.exit_code == 2
    assert f"error: {message}" in done.output


def test_a_second_download_of_the_same_file_is_busy(server, parquet, tmp_path):
    server.files = {YELLOW: parquet[YELLOW]}

    with open(tmp_path / f"{YELLOW}.part", "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(BusyError, match="being downloaded by another process") as busy:
            download_month("yellow", "2025-01", tmp_path, settings_for(server))

    assert busy.value.exit_code == 10
    assert server.requests == []
