import pytest

from chillflow.errors import ConfigError
from chillflow.sections import DownloadSettings
from chillflow.storage.tlc_download import download_month, landing_dir


def test_the_landing_directory_defaults_under_the_data_directory(tmp_path):
    assert landing_dir(tmp_path, {}) == tmp_path / "landing"
    assert landing_dir(tmp_path, {"CHILLFLOW_LANDING_DIR": str(tmp_path / "in")}) == tmp_path / "in"


@pytest.mark.parametrize("landing", ["a-file.parquet", "a-file.parquet/below"])
def test_a_landing_directory_that_cannot_be_one_is_a_configuration_error(tmp_path, landing):
    (tmp_path / "a-file.parquet").write_bytes(b"PAR1")
    # An address nothing listens on: the error must come before any request.
    conf = DownloadSettings(base_url="http://127.0.0.1:9/trip-data", attempts=1)

    with pytest.raises(ConfigError) as raised:
        download_month("yellow", "2025-01", tmp_path / landing, conf)

    assert str(raised.value).startswith(
        f"cannot write into the landing directory {tmp_path / landing} ("
    )
    assert str(raised.value).endswith(
        "expected a directory (--to names the directory, not the file)"
    )
