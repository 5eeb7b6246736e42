"""Write docs/CONFIGURATION.md from the settings schema: every setting with its default, allowed values,
environment variable and meaning.

Usage: python -m lakehouse.platform.config.docs [--output PATH | --check PATH]

    python -m lakehouse.platform.config.docs --output docs/CONFIGURATION.md   # what `make docs` runs

Without a flag the page is printed. ``--check`` exits with 1 (and shows the difference) when the file is
not what the schema gives.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Mapping, Sequence

from lakehouse.platform.config.loader import PROJECT_DIR
from lakehouse.platform.config.schema import SCHEMA, SECTIONS, Option, env_var_name
from lakehouse.platform.config.values import Duration, Secret

CONFIGURATION_MD = PROJECT_DIR / "docs" / "CONFIGURATION.md"
Schema = Mapping[str, Mapping[str, Option]]

INTRO = """\
# Configuration

<!-- Generated from lakehouse/platform/config/schema.py by `make docs`: edit the schema, not this file. -->

Every setting of `config.ini`, generated from the settings schema (`lakehouse/platform/config/schema.py`)
by `make docs`; `tests/unit/test_config_docs.py` fails when this page and the schema disagree.

- **Precedence**: `config.ini` < environment variables `LAKEHOUSE_<SECTION>_<KEY>` < command-line flags.
  `--config PATH` (or `LAKEHOUSE_CONFIG`) reads another file; when neither is given and the project's
  `config.ini` is missing, every setting has its default.
- **Durations** are written `<number> <unit>`, the unit `ms`, `s`, `min`, `h` or `d` or their long forms
  (`10 minutes`, `500 ms`).
- **Relative paths** are resolved against the folder of the configuration file.
- **Secrets** (`[kafka] password`, `[s3] secret_key`) are read from the environment only: the loader
  refuses them in `config.ini` and as flags, and the scripts mask them in every log line.
- **A bad setting** (an unknown section, key or `LAKEHOUSE_` variable, a wrong type, an out-of-range value)
  stops the script with exit code 2 and a message naming the setting, the value and what is allowed.
"""

_KINDS = {int: "whole number", float: "number", Duration: "duration", str: "any text", Secret: "any text"}
# Units for showing a duration's bounds: the largest that divides the bound.
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"), (0.001, "millisecond"))


def render(schema: Schema = SCHEMA) -> str:
    """The page: the introduction, then one table per section."""
    contents = " · ".join(f"[{name}](#{name})" for name in schema)
    parts = [INTRO, f"Sections: {contents}\n"]
    parts += [section_table(name, options) for name, options in schema.items()]
    return "\n".join(parts)


def section_table(name: str, options: Mapping[str, Option]) -> str:
    """``## [section]``, what the section is for, and a row per setting."""
    lines = [f"## [{name}]", ""]
    section = SECTIONS.get(name)
    if section is not None and section.__doc__:
        lines += [" ".join(section.__doc__.split()), ""]
    lines += ["| Key | Default | Allowed | Environment variable | Meaning |", "|---|---|---|---|---|"]
    for key, option in options.items():
        variable = f"`{env_var_name(name, key)}`" + (" (only there)" if option.env_only else "")
        cells = [f"`{key}`", f"`{option.default}`" if option.default else "(empty)", allowed(option), variable,
                 option.help]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def allowed(option: Option) -> str:
    """The values a setting takes, in words: its kind, choices or form, its bounds, whether it may be empty."""
    if option.type is bool:
        text = "`true` or `false`"
    elif option.choices is not None:
        text = "one of " + ", ".join(f"`{choice}`" for choice in option.choices)
    elif option.allowed is not None:
        text = option.allowed
    else:
        text = _KINDS[option.type]
    low, high = (None if b is None else _bound(option, b) for b in (option.min, option.max))
    if low is not None and high is not None:
        text += f", {low} to {high}"
    elif low is not None:
        text += f", at least {low}"
    elif high is not None:
        text += f", at most {high}"
    return text + (", or empty" if option.allow_empty else "")


def _bound(option: Option, bound: float) -> str:
    if option.type is not Duration:
        return str(int(bound)) if bound == int(bound) else f"{bound:g}"
    if bound == 0:
        return "0"
    for size, unit in _UNITS:
        count = round(bound / size, 6)
        if count >= 1 and count == int(count):
            return f"{int(count)} {unit}" + ("s" if count != 1 else "")
    return f"{bound:g} seconds"


def differences(text: str, schema: Schema = SCHEMA, name: str = "docs/CONFIGURATION.md") -> list[str]:
    """The unified diff from ``text`` to the page ``schema`` gives (empty when they agree)."""
    return list(difflib.unified_diff(text.splitlines(), render(schema).splitlines(), name, "from the schema",
                                     lineterm=""))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.platform.config.docs",
                                     description="Write docs/CONFIGURATION.md from the settings schema.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", type=Path, default=None, help="write the page to this file (default: print it)")
    where.add_argument("--check", type=Path, default=None,
                       help="exit with 1, showing the difference, when this file is not what the schema gives")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check is not None:
        committed = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
        diff = differences(committed, name=str(args.check))
        if diff:
            print("\n".join(diff), file=sys.stderr)
            print(f"{args.check} is not what the settings schema gives: run make docs", file=sys.stderr)
            return 1
        return 0
    if args.output is not None:
        args.output.write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
