"""Moved to lakehouse.local.kafka_broker; kept for one release: `python -m lakehouse.platform.kafka_local` runs
`python -m lakehouse.local.kafka_broker`."""

import sys

from lakehouse.local.kafka_broker import main

if __name__ == "__main__":
    sys.exit(main())
