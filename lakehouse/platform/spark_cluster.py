"""Moved to lakehouse.local.spark_cluster; kept for one release: `python -m lakehouse.platform.spark_cluster` runs
`python -m lakehouse.local.spark_cluster`."""

import sys

from lakehouse.local.spark_cluster import main

if __name__ == "__main__":
    sys.exit(main())
