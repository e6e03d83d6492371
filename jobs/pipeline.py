"""spark-submit entry point: ``spark-submit jobs/pipeline.py RAW_PATH [--month M] [--json]``."""

import sys

from chillflow.cli import app

if __name__ == "__main__":
    app(["pipeline", "month", *sys.argv[1:]], prog_name="jobs/pipeline.py")
