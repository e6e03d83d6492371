"""Write one synthetic TLC monthly Parquet file for benchmarks.

Example:
    python bench/generate.py /tmp/yellow_tripdata_2025-01.parquet --rows 3000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a plain script from a checkout: make the repository's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chillflow.errors import ChillflowError  # noqa: E402
from chillflow.generator import generate_month  # noqa: E402
from chillflow.schemas import SERVICES  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_path", type=Path, help="Parquet file to write")
    parser.add_argument("--service", choices=SERVICES, default="yellow")
    parser.add_argument("--month", default="2025-01", help="YYYY-MM of the pickups")
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dirty-rate", type=float, default=0.025)
    parser.add_argument("--row-group-rows", type=int, default=500_000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        path = generate_month(
            args.out_path,
            service=args.service,
            month=args.month,
            rows=args.rows,
            seed=args.seed,
            dirty_rate=args.dirty_rate,
            row_group_rows=args.row_group_rows,
        )
    except ChillflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    seconds = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6
    rate = args.rows / seconds if seconds > 0 else float("inf")
    print(f"{path}: {args.rows:,} rows, {size_mb:.1f} MB in {seconds:.1f} s ({rate:,.0f} rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
