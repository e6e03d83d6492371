import pytest

from chillflow.errors import ConfigError
from chillflow.sections import DownloadSettings
from chillflow.settings import load_settings
from chillflow.storage.tlc_download import landing_dir
from tests.conftest import REPO_ROOT


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
def test_invalid_settings_are_named(section, message):
    with pytest.raises(ConfigError, match=message):
        DownloadSettings.from_section(section, {})


def test_the_landing_directory_defaults_under_the_data_directory(tmp_path):
    assert landing_dir(tmp_path, {}) == tmp_path / "landing"
    assert landing_dir(tmp_path, {"CHILLFLOW_LANDING_DIR": str(tmp_path / "in")}) == tmp_path / "in"


def test_credentials_in_the_address_are_refused_without_showing_them():
    with pytest.raises(ConfigError, match="credentials would show in logs") as refused:
        DownloadSettings.from_section({}, {"CHILLFLOW_TLC_BASE_URL": "https://u:s3cret@m/tlc"})

    assert "s3cret" not in str(refused.value)
