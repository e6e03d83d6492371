"""The db command's zone lookup file."""

from __future__ import annotations

from pathlib import Path

from chillflow.cli.db import SHARED_ZONE_LOOKUP, zone_lookup_path


def test_zone_lookup_prefers_option_then_setting_then_shared_copy(tmp_path):
    given, configured = tmp_path / "given.csv", tmp_path / "configured.csv"

    assert zone_lookup_path(given, configured) == given
    assert zone_lookup_path(None, configured) == configured
    fallback = zone_lookup_path(None, None)
    assert fallback == (SHARED_ZONE_LOOKUP if SHARED_ZONE_LOOKUP.is_file() else None)


def test_zone_lookup_is_none_without_any_file(monkeypatch):
    monkeypatch.setattr("chillflow.cli.db.SHARED_ZONE_LOOKUP", Path("/nonexistent/zones.csv"))

    assert zone_lookup_path(None, None) is None
