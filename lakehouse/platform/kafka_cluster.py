"""Moved to lakehouse.local.kafka_cluster; kept for one release: `python -m lakehouse.platform.kafka_cluster` runs
`python -m lakehouse.local.kafka_cluster`."""

import sys

from lakehouse.local.kafka_cluster import main

if __name__ == "__main__":
    sys.exit(main())
