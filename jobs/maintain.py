"""spark-submit entry point: ``spark-submit jobs/maintain.py [--retain-hours N] [--json]``."""

import sys

from chillflow.cli import app

if __name__ == "__main__":
    app(["maintain", *sys.argv[1:]], prog_name="jobs/maintain.py")
