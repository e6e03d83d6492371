"""spark-submit entry point: ``spark-submit jobs/process_trips.py [CURATED_PATH] [--month M] …``."""

import sys

from chillflow.cli import app

if __name__ == "__main__":
    app(["process", "trips", *sys.argv[1:]], prog_name="jobs/process_trips.py")
