"""spark-submit entry point: ``spark-submit jobs/aggregate.py run|backfill|status [OPTIONS]``."""

import sys

from chillflow.cli import app

if __name__ == "__main__":
    app(["aggregate", *sys.argv[1:]], prog_name="jobs/aggregate.py")
