"""Moved to lakehouse.local.cluster; kept for one release: `python -m lakehouse.platform.cluster` runs
`python -m lakehouse.local.cluster`."""

import sys

from lakehouse.local.cluster import main

if __name__ == "__main__":
    sys.exit(main())
