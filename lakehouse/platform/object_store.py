"""Moved to lakehouse.local.object_store; kept for one release: `python -m lakehouse.platform.object_store` runs
`python -m lakehouse.local.object_store`."""

import sys

from lakehouse.local.object_store import main

if __name__ == "__main__":
    sys.exit(main())
