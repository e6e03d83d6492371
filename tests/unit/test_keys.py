import hashlib
from datetime import datetime

from chispa import assert_df_equality

from chillflow.transforms.keys import salt_frame, with_trip_keys

SALT = "chillflow-dev-salt-2025"
DDL = "service STRING, vendor_id INT, pickup_ts TIMESTAMP, pu_zone_id INT, source_row BIGINT"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def expected_keys(service, vendor, pickup, zone, row):
    prefix = "" if service == "yellow" else f"{service}|"
    iso = pickup.isoformat() if pickup else None
    return (
        sha(f"{SALT}|{prefix}{vendor}|{iso}|{zone}|{row}"),
        "veh_" + sha(f"{SALT}|vehicle|{vendor}|{row % 5000}")[:12],
    )


CASES = [
    ("yellow", 2, datetime(2025, 1, 1, 0, 18, 38), 229, 0),
    ("yellow", 1, datetime(2025, 1, 1, 0, 18, 38, 123456), 1, 5001),
    ("yellow", 7, datetime(2025, 1, 1, 0, 18, 38, 500), 265, 12345678),
    ("green", 2, datetime(2021, 1, 1, 0, 15, 56), 43, 0),
    ("yellow", None, datetime(2025, 12, 31, 23, 59, 59, 999999), 161, 4999),
]


def test_keys_match_hashlib_including_fractional_seconds_and_nulls(spark):
    trips = spark.createDataFrame(CASES, DDL)

    keyed = with_trip_keys(trips, salt_frame(spark, SALT))

    expected = spark.createDataFrame(
        [(*case, *expected_keys(*case)) for case in CASES],
        f"{DDL}, trip_key STRING, vehicle_id_h STRING",
    )
    assert_df_equality(keyed, expected, ignore_nullable=True)


def test_pinned_value_of_the_core_formula(spark):
    trips = spark.createDataFrame([CASES[0]], DDL)

    key = with_trip_keys(trips, salt_frame(spark, SALT)).first()["trip_key"]

    # sha256("chillflow-dev-salt-2025|2|2025-01-01T00:18:38|229|0"), computed with hashlib
    assert key == "7d6600546b7a59e2fe80919fe64237b90e758516d768f1a45a79aa4929ab43d2"


def test_services_never_collide(spark):
    same = [("yellow", 2, datetime(2021, 1, 1), 43, 0), ("green", 2, datetime(2021, 1, 1), 43, 0)]
    keyed = with_trip_keys(spark.createDataFrame(same, DDL), salt_frame(spark, SALT))

    assert keyed.select("trip_key").distinct().count() == 2


def test_salt_never_appears_in_the_plan(spark, capsys):
    secret = "s3cr3t-salt-value"
    keyed = with_trip_keys(spark.createDataFrame([CASES[0]], DDL), salt_frame(spark, secret))

    keyed.explain(extended=True)

    assert secret not in capsys.readouterr().out
