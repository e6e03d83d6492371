from datetime import date, datetime, timedelta, timezone

import pytest

from chillflow.errors import ConfigError
from chillflow.hour_window import (
    HourWindow,
    day_end,
    hours_until,
    month_chunks,
    month_refresh_window,
    parse_date,
    parse_hour,
    to_utc_naive,
    yesterday,
)
from chillflow.storage.kpi_store import merge_condition


def test_a_day_window_counts_lookback_back_from_the_end_of_the_day():
    end = day_end(date(2025, 3, 10))

    assert hours_until(end, 24) == HourWindow(datetime(2025, 3, 10), datetime(2025, 3, 11))
    assert hours_until(end, 48) == HourWindow(datetime(2025, 3, 9), datetime(2025, 3, 11))
    assert hours_until(end, 6).start == datetime(2025, 3, 10, 18)
    assert hours_until(end, 48).hours == 48


def test_day_end_takes_the_utc_date_of_an_aware_datetime():
    new_york = timezone(timedelta(hours=-5))
    late_evening = datetime(2025, 3, 10, 22, 30, tzinfo=new_york)  # 03:30 UTC on the 11th

    assert hours_until(day_end(late_evening), 24).start == datetime(2025, 3, 11)


@pytest.mark.parametrize("lookback", [0, -1, 1.5, True, "24"])
def test_hours_until_rejects_bad_lookbacks(lookback):
    with pytest.raises(ConfigError, match="lookback_hours"):
        hours_until(day_end(date(2025, 3, 10)), lookback)


def test_hours_until_ends_at_the_given_hour():
    assert hours_until(datetime(2025, 3, 10, 10), 2) == HourWindow(
        datetime(2025, 3, 10, 8), datetime(2025, 3, 10, 10)
    )
    assert hours_until(datetime(2025, 3, 1, 1), 3).start == datetime(2025, 2, 28, 22)
    with pytest.raises(ConfigError, match="lookback_hours=0: expected a positive integer"):
        hours_until(datetime(2025, 3, 10, 10), 0)
    with pytest.raises(ConfigError, match="not on a full hour"):
        hours_until(datetime(2025, 3, 10, 10, 30), 2)


def test_parse_hour():
    assert parse_hour("2025-03-10T10") == datetime(2025, 3, 10, 10)
    assert parse_hour("2025-03-10T10:00") == datetime(2025, 3, 10, 10)
    for bad in ("2025-03-10T24", "2025-03-10 10", "2025-03-10T10:30", "2025-03-10T10-04:00"):
        with pytest.raises(ConfigError, match=f"invalid --until '{bad}': expected YYYY-MM-DDTHH"):
            parse_hour(bad, "--until")


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "1899-12-31"])
def test_dates_and_hours_beyond_the_supported_years_are_refused(value):
    # The day after 9999-12-31 and the hours before 0001-01-01 overflow Python's dates.
    with pytest.raises(ConfigError, match=f"invalid --date '{value}': .*, years 1900-2999"):
        parse_date(value, "--date")
    with pytest.raises(ConfigError, match="years 1900-2999"):
        parse_hour(f"{value}T00", "--until")


def test_a_lookback_beyond_the_first_date_is_refused():
    with pytest.raises(ConfigError, match="lookback_hours=1000000000 before 2025-03-10T10"):
        hours_until(datetime(2025, 3, 10, 10), 10**9)


def test_window_bounds_must_be_naive_whole_hours_in_order():
    with pytest.raises(ConfigError, match="not on a full hour"):
        HourWindow(datetime(2025, 1, 1, 0, 30), datetime(2025, 1, 2))
    with pytest.raises(ConfigError, match="must be naive UTC"):
        HourWindow(datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 1, 2))
    with pytest.raises(ConfigError, match="is not before end"):
        HourWindow(datetime(2025, 1, 2), datetime(2025, 1, 2))
    with pytest.raises(ConfigError, match="must be a datetime"):
        HourWindow("2025-01-01 00:00:00' OR 1=1 --", datetime(2025, 1, 2))


def test_aware_bounds_convert_to_naive_utc():
    plus_two = timezone(timedelta(hours=2))

    assert to_utc_naive(datetime(2025, 1, 1, 2, tzinfo=plus_two)) == datetime(2025, 1, 1, 0)


def test_a_months_refresh_window_takes_in_the_day_either_side():
    assert month_refresh_window("2024-02") == HourWindow(
        datetime(2024, 1, 31), datetime(2024, 3, 2)
    )
    assert month_refresh_window("2024-12").label() == "2024-11-30T00/2025-01-02T00"


def test_month_chunks_split_inclusive_ranges_at_calendar_months():
    chunks = month_chunks(date(2024, 12, 20), date(2025, 2, 3))

    assert [(c.start, c.end) for c in chunks] == [
        (datetime(2024, 12, 20), datetime(2025, 1, 1)),
        (datetime(2025, 1, 1), datetime(2025, 2, 1)),
        (datetime(2025, 2, 1), datetime(2025, 2, 4)),
    ]
    assert month_chunks(date(2025, 1, 5), date(2025, 1, 5)) == [
        HourWindow(datetime(2025, 1, 5), datetime(2025, 1, 6))
    ]
    with pytest.raises(ConfigError, match="before its start"):
        month_chunks(date(2025, 2, 1), date(2025, 1, 31))


def test_months_dates_and_label():
    window = HourWindow(datetime(2024, 12, 31, 23), datetime(2025, 2, 1))

    assert window.months() == ["2024-12", "2025-01"]
    assert (window.first_date, window.last_date) == (date(2024, 12, 31), date(2025, 1, 31))
    assert window.label() == "2024-12-31T23/2025-02-01T00"


def test_merge_condition_carries_the_key_and_literal_bounds():
    window = HourWindow(datetime(2025, 1, 2), datetime(2025, 1, 3, 6))

    assert merge_condition(window) == (
        "t.zone_id = s.zone_id AND t.hour_ts = s.hour_ts"
        " AND t.hour_ts >= TIMESTAMP '2025-01-02 00:00:00'"
        " AND t.hour_ts < TIMESTAMP '2025-01-03 06:00:00'"
        " AND t.hour_date BETWEEN DATE '2025-01-02' AND DATE '2025-01-03'"
    )


def test_sql_range_refuses_anything_but_a_column_name():
    window = HourWindow(datetime(2025, 1, 2), datetime(2025, 1, 3))

    with pytest.raises(ValueError, match="unsafe column"):
        window.sql_range("hour_ts) OR (1=1")


def test_parse_date_and_yesterday():
    assert parse_date("2025-02-28") == date(2025, 2, 28)
    with pytest.raises(ConfigError, match=r"invalid --date '2025-2-28': expected YYYY-MM-DD"):
        parse_date("2025-2-28", "--date")
    with pytest.raises(ConfigError, match="invalid date '2025-02-30'"):
        parse_date("2025-02-30")
    assert yesterday("UTC", datetime(2025, 3, 1, 0, 30, tzinfo=timezone.utc)) == date(2025, 2, 28)
    # 20:30 on 2025-03-10 in New York is already the 11th in UTC: yesterday is New York's.
    evening = datetime(2025, 3, 11, 0, 30, tzinfo=timezone.utc)
    assert yesterday("America/New_York", evening) == date(2025, 3, 9)
