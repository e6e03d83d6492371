import random
from datetime import datetime, timedelta

from chispa import assert_approx_df_equality, assert_df_equality

from chillflow.transforms.kpis import hourly_zone_kpis

TRIPS_DDL = (
    "pickup_ts TIMESTAMP, pu_zone_id INT, vehicle_id_h STRING, payment_type INT, "
    "fare_amount DOUBLE, tip_amount DOUBLE, total_amount DOUBLE, distance_km DOUBLE, "
    "duration_min DOUBLE, avg_speed_kmh DOUBLE"
)
QUARANTINE_DDL = "pickup_ts TIMESTAMP, pu_zone_id INT"
KPIS_DDL = (
    "zone_id INT, hour_ts TIMESTAMP, trips BIGINT, avg_fare DOUBLE, avg_tip DOUBLE, "
    "avg_speed_kmh DOUBLE, avg_distance_km DOUBLE, avg_duration_min DOUBLE, pct_card DOUBLE, "
    "unique_vehicles BIGINT, total_revenue DOUBLE, outlier_rate DOUBLE"
)
H8 = datetime(2025, 1, 15, 8)
H9 = datetime(2025, 1, 15, 9)


def trip(pickup, zone=161, vehicle="veh_a", payment=1, fare=10.0, tip=2.0, total=15.0,
         km=3.0, minutes=10.0, speed=18.0):  # fmt: skip
    return (pickup, zone, vehicle, payment, fare, tip, total, km, minutes, speed)


def assert_kpis(actual, expected_rows, spark):
    expected = spark.createDataFrame(expected_rows, KPIS_DDL)
    assert_approx_df_equality(actual, expected, 1e-9, ignore_nullable=True, ignore_row_order=True)


def test_hour_boundaries_and_averages_over_whole_groups(spark):
    trips = spark.createDataFrame(
        [
            trip(H8, vehicle="veh_a", payment=1, fare=10.0, tip=2.0, total=15.0,
                 km=2.0, minutes=10.0, speed=12.0),
            trip(H8 + timedelta(minutes=30), vehicle="veh_b", payment=1, fare=33.0, tip=3.0,
                 total=40.0, km=9.0, minutes=30.0, speed=18.0),
            # the last microsecond of 08:00-09:00 still belongs to it
            trip(H9 - timedelta(microseconds=1), vehicle="veh_c", payment=2, fare=20.0,
                 tip=0.0, total=25.5, km=4.0, minutes=20.0, speed=12.0),
            # 09:00:00 opens the next hour
            trip(H9, vehicle="veh_a", payment=1, fare=7.5, tip=1.25, total=10.0, km=1.5,
                 minutes=6.0, speed=15.0),
        ],
        TRIPS_DDL,
    )  # fmt: skip

    kpis = hourly_zone_kpis(trips)

    assert_kpis(
        kpis,
        [
            # avg_tip 5.00 / 3 and pct_card 2 of 3: averages over the group, not of averages
            (161, H8, 3, 21.0, 1.6666666666666667, 14.0, 5.0, 20.0, 66.66666666666667, 3, 80.5,
             None),
            (161, H9, 1, 7.5, 1.25, 15.0, 1.5, 6.0, 100.0, 1, 10.0, None),
        ],
        spark,
    )  # fmt: skip


def test_null_payment_type_counts_as_a_trip_but_not_as_card(spark):
    trips = spark.createDataFrame(
        [trip(H8, payment=1), trip(H8, payment=None), trip(H8, payment=2), trip(H8, payment=1)],
        TRIPS_DDL,
    )

    row = hourly_zone_kpis(trips).first()

    assert (row["trips"], row["pct_card"]) == (4, 50.0)


def test_zero_duration_trips_have_no_speed_but_count_elsewhere(spark):
    trips = spark.createDataFrame(
        [
            trip(H8, minutes=0.0, speed=None, km=0.0, fare=3.0),
            trip(H8, minutes=10.0, speed=30.0, km=5.0, fare=17.0),
        ],
        TRIPS_DDL,
    )

    kpis = hourly_zone_kpis(trips)

    assert_kpis(kpis, [(161, H8, 2, 10.0, 2.0, 30.0, 2.5, 5.0, 100.0, 1, 30.0, None)], spark)


def test_one_vehicle_across_zones_counts_once_per_zone(spark):
    trips = spark.createDataFrame(
        [
            trip(H8, zone=1, vehicle="veh_a"),
            trip(H8 + timedelta(minutes=20), zone=1, vehicle="veh_a"),
            trip(H8 + timedelta(minutes=40), zone=2, vehicle="veh_a"),
            trip(H8 + timedelta(minutes=50), zone=2, vehicle="veh_b"),
            trip(H8, zone=2, vehicle=None),
        ],
        TRIPS_DDL,
    )

    vehicles = {r["zone_id"]: r["unique_vehicles"] for r in hourly_zone_kpis(trips).collect()}

    assert vehicles == {1: 1, 2: 2}


def test_outlier_rate_counts_quarantined_rows_of_the_zone_hour(spark):
    trips = spark.createDataFrame(
        [trip(H8, zone=1), trip(H8, zone=1), trip(H8, zone=1), trip(H8, zone=2)], TRIPS_DDL
    )
    quarantined = spark.createDataFrame(
        [
            (H8 + timedelta(minutes=5), 1),
            (H9, 1),  # an hour without curated trips has no KPI row to attach to
            (H8, None),  # unattributable
            (None, 1),  # unattributable
            (H8, 999),  # out-of-range zone: never a KPI zone
        ],
        QUARANTINE_DDL,
    )

    rates = {
        r["zone_id"]: r["outlier_rate"] for r in hourly_zone_kpis(trips, quarantined).collect()
    }

    assert rates == {1: 25.0, 2: 0.0}


def test_rows_without_zone_or_pickup_and_unknown_measures(spark):
    trips = spark.createDataFrame(
        [
            trip(None),
            trip(H8, zone=None),
            trip(H8, zone=7, payment=None, fare=None, tip=None, total=None, km=None,
                 minutes=None, speed=None),
        ],
        TRIPS_DDL,
    )  # fmt: skip

    kpis = hourly_zone_kpis(trips)

    assert_kpis(kpis, [(7, H8, 1, None, None, None, None, None, 0.0, 1, None, None)], spark)


def test_empty_input_gives_empty_typed_output(spark):
    trips = spark.createDataFrame([], TRIPS_DDL)

    kpis = hourly_zone_kpis(trips, spark.createDataFrame([], QUARANTINE_DDL))

    assert_kpis(kpis, [], spark)


def test_values_do_not_depend_on_partitioning_or_row_order(spark):
    """Exact equality: a rerun over other partitions must not look like an update."""
    rng = random.Random(7)
    rows = [
        trip(
            H8 + timedelta(seconds=rng.randrange(3 * 3600)),
            zone=rng.choice((1, 2)),
            vehicle=f"veh_{rng.randrange(30)}",
            payment=rng.choice((1, 2, None)),
            fare=round(rng.uniform(2.5, 90), 2),
            tip=round(rng.uniform(0, 20), 2),
            total=round(rng.uniform(3, 120), 2),
            km=rng.uniform(0.1, 30) / 3,
            minutes=rng.uniform(1, 60) / 7,
            speed=rng.uniform(3, 60) / 3,
        )
        for _ in range(400)
    ]
    one = spark.createDataFrame(rows, TRIPS_DDL).repartition(1)
    many = spark.createDataFrame(list(reversed(rows)), TRIPS_DDL).repartition(7)

    assert_df_equality(
        hourly_zone_kpis(one), hourly_zone_kpis(many), ignore_nullable=True, ignore_row_order=True
    )
