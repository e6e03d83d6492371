"""A lake on object storage keeps its URI; a local lake stays an absolute Path."""

from pathlib import Path

import pytest

from chillflow.settings import load_settings

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    ("lake", "kpis"),
    [
        ("s3a://chillflow-lake/prod/", "s3a://chillflow-lake/prod/marts/zone_hourly_kpis"),
        (
            "abfss://lake@account.dfs.core.windows.net/chillflow",
            "abfss://lake@account.dfs.core.windows.net/chillflow/marts/zone_hourly_kpis",
        ),
        ("gs://bucket/lake", "gs://bucket/lake/marts/zone_hourly_kpis"),
    ],
)
def test_object_storage_lake_keeps_its_uri(lake, kpis):
    settings = load_settings(CONF, {"CHILLFLOW_LAKE_DIR": lake})

    assert settings.lake_dir == lake.rstrip("/")
    assert settings.tables.kpis == kpis
    assert settings.tables.curated == f"{lake.rstrip('/')}/curated/trips"


def test_local_lake_is_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = load_settings(CONF, {"CHILLFLOW_LAKE_DIR": "lake"})

    assert settings.lake_dir == tmp_path / "lake"
    assert settings.tables.quarantine == tmp_path / "lake/curated/quarantine"
