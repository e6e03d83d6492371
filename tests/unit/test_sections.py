import pytest

from chillflow.errors import ConfigError
from chillflow.sections import AggregateSettings, check_source
from chillflow.settings import load_settings
from tests.conftest import REPO_ROOT


def test_the_shipped_section_is_valid():
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
