"""spark-submit entry point: ``spark-submit jobs/curate.py RAW_PATH [CURATED_PATH] [--month M]``."""

import sys

from chillflow.cli import app

if __name__ == "__main__":
    app(["curate", "month", *sys.argv[1:]], prog_name="jobs/curate.py")
