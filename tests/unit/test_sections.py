import pytest

from chillflow.errors import ConfigError
from chillflow.sections import AggregateSettings, DownloadSettings, TripLoadSettings, check_source
from chillflow.settings import load_settings
from tests.conftest import REPO_ROOT


def test_the_shipped_aggregate_section_is_valid():
    assert load_settings(REPO_ROOT / "conf", {}).aggregate == AggregateSettings(
        default_lookback_hours=24, default_source="postgres", jdbc_partitions=4,
        jdbc_fetch_size=10_000,
    )  # fmt: skip


def test_missing_keys_take_defaults():
    assert AggregateSettings.from_section({"jdbc_partitions": 8}).jdbc_partitions == 8
    assert AggregateSettings.from_section({}) == AggregateSettings()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"jdbc_partitions": 0}, r"jdbc_partitions=0: expected a positive integer"),
        ({"default_lookback_hours": "24"}, r"default_lookback_hours='24'"),
        ({"jdbc_fetch_size": True}, r"jdbc_fetch_size=True"),
        ({"default_source": "s3"}, r"default_source='s3': expected one of postgres, curated"),
        ({"lookback": 24}, r"unknown keys \['lookback'\]"),
    ],
)
def test_bad_values_are_config_errors(section, message):
    with pytest.raises(ConfigError, match=message):
        AggregateSettings.from_section(section)


def test_check_source():
    assert check_source("curated") == "curated"
    with pytest.raises(ConfigError, match=r"--source='parquet': expected one of postgres, curated"):
        check_source("parquet")


def test_trip_load_settings_defaults_and_validation():
    assert TripLoadSettings.from_section({}) == TripLoadSettings()
    loaded = TripLoadSettings.from_section({"jdbc_partitions": 2})
    assert loaded.jdbc_partitions == 2

    with pytest.raises(ConfigError, match=r"\[trips\]: unknown keys \['writers'\]"):
        TripLoadSettings.from_section({"writers": "copy"})
    with pytest.raises(ConfigError, match=r"\[trips\]: unknown keys \['writer'\]"):
        TripLoadSettings.from_section({"writer": "copy"})
    with pytest.raises(ConfigError, match="jdbc_partitions=0: expected a positive integer"):
        TripLoadSettings.from_section({"jdbc_partitions": 0})
    with pytest.raises(ConfigError, match="work_mem='256 MB; DROP'"):
        TripLoadSettings.from_section({"work_mem": "256 MB; DROP"})


def test_the_shipped_section_is_valid_and_the_environment_names_a_mirror():
    shipped = load_settings(REPO_ROOT / "conf", {}).download
    mirror = load_settings(REPO_ROOT / "conf", {"CHILLFLOW_TLC_BASE_URL": "http://m:8/tlc/"})

    assert shipped == DownloadSettings(
        base_url="https://d37ci6vzurychx.cloudfront.net/trip-data", attempts=4, backoff_sec=2.0,
        timeout_sec=60.0, progress_every_sec=5.0, before_monthly=False,
    )  # fmt: skip
    assert mirror.download.base_url == "http://m:8/tlc"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"attempts": 0}, r"attempts=0: expected a positive integer"),
        ({"backoff_sec": -1}, r"backoff_sec=-1: expected seconds >= 0"),
        ({"timeout_sec": "1m"}, r"timeout_sec='1m': expected seconds >= 0"),
        ({"before_monthly": "yes"}, r"before_monthly: expected true or false"),
        ({"base_url": "ftp://tlc/data"}, r"expected an http\(s\):// address"),
        ({"retries": 3}, r"unknown keys \['retries'\]"),
    ],
)
def test_invalid_download_settings_are_named(section, message):
    with pytest.raises(ConfigError, match=message):
        DownloadSettings.from_section(section, {})


def test_credentials_in_the_address_are_refused_without_showing_them():
    with pytest.raises(ConfigError, match="credentials would show in logs") as refused:
        DownloadSettings.from_section({}, {"CHILLFLOW_TLC_BASE_URL": "https://u:s3cret@m/tlc"})

    assert "s3cret" not in str(refused.value)
