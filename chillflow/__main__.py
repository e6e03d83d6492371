"""``python -m chillflow``."""

from chillflow.cli import main

main()
