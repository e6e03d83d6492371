"""Deterministic generator of realistic NYC TLC monthly trip files.

Benchmarks and tests need TLC-like months of any size without downloading them. The rows follow
the shapes of the real files (time-of-day profile, skewed zones, lognormal distances, fares that
add up) and carry a controlled share of dirty rows of the kinds real files contain. Layout
variants reproduce the column names and type drift between TLC vintages.

Rows are drawn in fixed blocks of ``_BLOCK_ROWS`` whose random stream is derived from
``(seed, block index)``, so the data depends only on the arguments that define it and never on
the Parquet row-group size. Pickups are stratified over the month, so a file is roughly ordered
by pickup time like the published ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chillflow.errors import ConfigError
from chillflow.generator import drawing
from chillflow.generator.drawing import Spec
from chillflow.generator.layouts import LAYOUTS, Layout
from chillflow.generator.profiles import PROFILES, calendar
from chillflow.settings import parse_month

#: Supported file layouts; see :func:`generate_month`.
VARIANTS: tuple[str, ...] = (
    "current",
    "pandas_ns",
    "legacy_2019",
    "lowercase_airport",
    "pre2016",
    "fhv",
)
#: Supported services (the ``{service}_tripdata_`` prefix of TLC file names).
SERVICES: tuple[str, ...] = ("yellow", "green", "fhv")

_BLOCK_ROWS = 500_000


def tlc_file_name(service: str, month: str) -> str:
    """Return the TLC file name of a service's month, e.g. ``yellow_tripdata_2025-01.parquet``.

    Raises:
        ConfigError: If the service or month is invalid.
    """
    _check_service(service)
    return f"{service}_tripdata_{parse_month(month)}.parquet"


def generate_trips_table(
    *,
    service: str = "yellow",
    month: str = "2025-01",
    rows: int = 1000,
    seed: int = 42,
    dirty_rate: float = 0.025,
    variant: str = "current",
) -> pa.Table:
    """Generate a month of trips in memory: the rows :func:`generate_month` writes.

    Returns:
        The rows with the layout's schema.

    Raises:
        ConfigError: If an argument is invalid.
    """
    spec = _make_spec(service, month, rows, seed, dirty_rate, variant)
    tables = list(_generate_blocks(spec))
    if not tables:
        return spec.layout.schema.empty_table()
    return pa.concat_tables(tables)


def generate_month(
    path: Path,
    *,
    service: str = "yellow",
    month: str = "2025-01",
    rows: int = 100_000,
    seed: int = 42,
    dirty_rate: float = 0.025,
    variant: str = "current",
    row_group_rows: int = 500_000,
) -> Path:
    """Write one TLC-style monthly Parquet file.

    Rows are generated and written a block at a time, so memory stays flat whatever ``rows``
    (about one block plus one row group). The file appears atomically: it is written under a
    hidden temporary name and renamed.

    Layouts (``variant``): ``current`` is yellow 2025 as published (int32 ids, µs timestamps,
    ``Airport_fee``, ``cbd_congestion_fee``); ``pandas_ns`` the same rewritten by pandas (ns
    timestamps, double passenger_count/RatecodeID); ``legacy_2019`` has neither airport nor CBD
    fee and int64/double codes; ``lowercase_airport`` is 2023 with ``airport_fee``; ``pre2016``
    has latitude/longitude instead of zone ids. For ``service="green"`` only ``current`` (the
    2021 LPEP layout) exists. ``fhv`` (or ``service="fhv"``) writes an FHV file.

    Args:
        path: The file to write; parent directories are created.
        service: ``yellow``, ``green`` or ``fhv``.
        month: The month of the pickups, ``YYYY-MM``.
        rows: Number of rows.
        seed: Non-negative seed; the same arguments always give the same rows.
        dirty_rate: Fraction of rows that break at least one data-quality rule.
        variant: File layout, one of :data:`VARIANTS`.
        row_group_rows: Rows per Parquet row group; does not change the data.

    Returns:
        ``path``.

    Raises:
        ConfigError: If an argument is invalid.
    """
    spec = _make_spec(service, month, rows, seed, dirty_rate, variant)
    if not isinstance(row_group_rows, int) or row_group_rows < 1:
        raise ConfigError(f"row_group_rows must be a positive integer, got {row_group_rows!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with pq.ParquetWriter(partial, spec.layout.schema, compression="snappy") as writer:
            for table in _row_groups(_generate_blocks(spec), row_group_rows):
                writer.write_table(table, row_group_size=row_group_rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _row_groups(blocks: Iterator[pa.Table], row_group_rows: int) -> Iterator[pa.Table]:
    """Re-slice generated blocks into tables of whole row groups (the last may be short)."""
    pending: list[pa.Table] = []
    pending_rows = 0
    for block in blocks:
        pending.append(block)
        pending_rows += block.num_rows
        if pending_rows >= row_group_rows:
            table = pa.concat_tables(pending)
            whole = pending_rows - pending_rows % row_group_rows
            yield table.slice(0, whole)
            rest = table.slice(whole)
            pending, pending_rows = [rest], rest.num_rows
    if pending_rows:
        yield pa.concat_tables(pending)


def _make_spec(
    service: str, month: str, rows: int, seed: int, dirty_rate: float, variant: str
) -> Spec:
    layout = _layout_of(service, variant)
    if not isinstance(rows, int) or rows < 0:
        raise ConfigError(f"rows must be a non-negative integer, got {rows!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= dirty_rate <= 1.0:
        raise ConfigError(f"dirty_rate must be between 0 and 1, got {dirty_rate!r}")
    return Spec(
        layout=layout,
        profile=PROFILES[layout.profile],
        month=calendar(parse_month(month)),
        rows=rows,
        seed=seed,
        dirty_rate=float(dirty_rate),
    )


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ConfigError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)}")


def _layout_of(service: str, variant: str) -> Layout:
    _check_service(service)
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    key = "fhv" if variant == "fhv" or service == "fhv" else f"{service}/{variant}"
    if key not in LAYOUTS or (service == "fhv" and variant not in ("current", "fhv")):
        supported = ", ".join(sorted(LAYOUTS))
        raise ConfigError(
            f"variant {variant!r} does not exist for service {service!r}; supported: {supported}"
        )
    return LAYOUTS[key]


def _generate_blocks(spec: Spec) -> Iterator[pa.Table]:
    for start in range(0, spec.rows, _BLOCK_ROWS):
        yield _generate_block(spec, start, min(_BLOCK_ROWS, spec.rows - start))


def _generate_block(spec: Spec, start: int, n: int) -> pa.Table:
    rng = np.random.default_rng([spec.seed, start // _BLOCK_ROWS])
    cols: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray] = {}
    drawing.draw_trips(rng, spec, start, n, cols)
    drawing.draw_codes(rng, spec.profile, n, cols, nulls)
    drawing.draw_amounts(rng, spec, n, cols)
    drawing.apply_dirt(rng, spec, n, cols, nulls)
    if "pickup_longitude" in spec.layout.fields:
        drawing.draw_coordinates(rng, n, cols, nulls)
    if "dispatching_base_num" in spec.layout.fields:
        drawing.draw_fhv_bases(rng, n, cols, nulls)
    return drawing.to_table(spec.layout, n, cols, nulls)
