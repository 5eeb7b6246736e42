"""Run by spark-submit only (see spark_jars.py): write the jars it resolved from --packages to a file.

Usage: spark-submit --packages ... lakehouse/platform/jars_probe.py OUTPUT_FILE
spark-submit puts the resolved jars of a Python application on its PYTHONPATH; no SparkContext is
started, so this takes a few seconds.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: jars_probe.py OUTPUT_FILE", file=sys.stderr)
        return 2
    jars = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p.endswith(".jar")]
    if not jars:
        print("spark-submit gave no resolved jar on PYTHONPATH", file=sys.stderr)
        return 1
    with open(args[0], "w", encoding="utf-8") as out:
        out.write("\n".join(jars) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
