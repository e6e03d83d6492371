from chillflow.storage.tlc_download import landing_dir


def test_the_landing_directory_defaults_under_the_data_directory(tmp_path):
    assert landing_dir(tmp_path, {}) == tmp_path / "landing"
    assert landing_dir(tmp_path, {"CHILLFLOW_LANDING_DIR": str(tmp_path / "in")}) == tmp_path / "in"
