"""The one configuration loader: config.ini, then environment variables, then CLI flags.

``load_config`` is a chain of layers. Each source layer gives the settings it sets, each one naming where
its text came from; a later layer wins (defaults < config.ini < ``LAKEHOUSE_<SECTION>_<KEY>`` variables <
the overrides a script collected from its flags). Then every text is validated against the schema, and
the cross-checks look at settings together. Anything wrong (unknown section or key, wrong type,
out-of-range value, malformed duration) raises ``ConfigError`` whose message names the key, the value and
what is allowed; entry points turn it into exit code 2.
"""

from __future__ import annotations

import configparser
import os
import zoneinfo
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from lakehouse.platform.config.schema import ENV_PREFIX, SCHEMA, SECTIONS, Config, env_var_name
from lakehouse.platform.config.values import ConfigError, Secret, resolve_path

CONFIG_ENV = "LAKEHOUSE_CONFIG"
PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_PATH = PROJECT_DIR / "config.ini"

_ENV_TO_KEY = {env_var_name(s, k): (s, k) for s, opts in SCHEMA.items() for k in opts}


class Raw(NamedTuple):
    """A setting's text before validation, and where it came from (for the error messages)."""

    text: str
    origin: str


# (section, key) → its text; a layer holds only the settings its source sets.
Layer = dict[tuple[str, str], Raw]
# section → key → parsed value.
Values = dict[str, dict[str, Any]]


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], Any] | None = None,
) -> Config:
    """Read and validate the configuration.

    ``path`` defaults to ``$LAKEHOUSE_CONFIG`` then to the project's config.ini (a missing default file
    means all defaults). ``env`` defaults to ``os.environ``. ``overrides`` maps ``(section, key)`` to
    values from CLI flags (``None`` entries are ignored, so unset flags can be passed through as is).
    """
    env = os.environ if env is None else env
    config_path, source = config_file(path, env)
    raw = {**default_layer(), **file_layer(config_path, source), **environment_layer(env),
           **flag_layer(overrides or {})}
    values = with_local_zone(validated(raw), env)
    base_dir = source.parent if source is not None else PROJECT_DIR
    sections: dict[str, Any] = {name: SECTIONS[name](**keys) for name, keys in values.items()}
    cfg = Config(source=source, base_dir=base_dir, **sections)
    cross_check(cfg, raw)
    return cfg


# --- the layers ------------------------------------------------------------------------------------

def config_file(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> tuple[Path, Path | None]:
    """The file to read as named (``path``, else ``$LAKEHOUSE_CONFIG``, else the project's config.ini), and
    its resolved path, or None when the project's config.ini is missing (all defaults then). A file
    named by ``path`` or ``$LAKEHOUSE_CONFIG`` must exist."""
    explicit = path is not None or bool(env.get(CONFIG_ENV))
    config_path = Path(path if path is not None else env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    if config_path.exists():
        return config_path, config_path.resolve()
    if explicit:
        raise ConfigError(f"config file {config_path} does not exist")
    return config_path, None


def default_layer() -> Layer:
    """Every setting at its default, in the schema's order (which the validation's messages follow)."""
    return {(s, k): Raw(o.default, "default") for s, opts in SCHEMA.items() for k, o in opts.items()}


def file_layer(config_path: Path, source: Path | None) -> Layer:
    """The settings the configuration file sets (none when there is no file)."""
    if source is None:
        return {}
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        parser.read_string(read_config_text(config_path), source=str(config_path))
    except configparser.Error as e:
        raise ConfigError(f"{config_path}: cannot be parsed: {e}") from e
    layer = {}
    for section in parser.sections():
        if section not in SCHEMA:
            raise ConfigError(f"{config_path}: unknown section [{section}]; allowed sections: {', '.join(SCHEMA)}")
        for key, value in parser.items(section):
            if key not in SCHEMA[section]:
                raise ConfigError(f"{config_path}: unknown key [{section}] {key!r}; allowed keys: "
                                  f"{', '.join(SCHEMA[section])}")
            if SCHEMA[section][key].env_only:
                raise _env_only_error(section, key, str(config_path))
            layer[section, key] = Raw(value, str(config_path))
    return layer


def environment_layer(env: Mapping[str, str]) -> Layer:
    """The settings ``LAKEHOUSE_<SECTION>_<KEY>`` variables set; any other ``LAKEHOUSE_`` name is an error
    (a misspelt variable would otherwise be ignored without a word)."""
    layer = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        if name not in _ENV_TO_KEY:
            raise ConfigError(f"environment variable {name} is not a known setting; names look like "
                              f"{ENV_PREFIX}<SECTION>_<KEY>, e.g. {env_var_name('kafka', 'topic')}")
        layer[_ENV_TO_KEY[name]] = Raw(value, f"environment {name}")
    return layer


def flag_layer(overrides: Mapping[tuple[str, str], Any]) -> Layer:
    """The settings a script's flags set (``None``: the flag was not given)."""
    layer = {}
    for (section, key), value in overrides.items():
        if value is None:
            continue
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f"override of unknown setting [{section}] {key}")
        if SCHEMA[section][key].env_only:
            raise _env_only_error(section, key, "command line")
        layer[section, key] = Raw(str(value), "command line")
    return layer


def _env_only_error(section: str, key: str, where: str) -> ConfigError:
    return ConfigError(f"{where}: [{section}] {key} is read from the environment only (a secret): set "
                       f"{env_var_name(section, key)} instead")


def read_config_text(path: Path) -> str:
    """The configuration file's text: UTF-8, with or without a byte order mark; ``ConfigError`` in one line
    naming the file and the problem for anything else (a Latin-1 byte, UTF-16, an unreadable file)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from e
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: is saved as UTF-16; save it as UTF-8 (most editors: 'Save with encoding')")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line} (Latin-1 or "
                          "Windows-1252?); save it as UTF-8") from e


# --- validation ------------------------------------------------------------------------------------

def validated(raw: Layer) -> Values:
    """Every setting parsed to its type, in the schema's order; the first bad one raises ``ConfigError``."""
    values: Values = {section: {} for section in SCHEMA}
    for (section, key), (text, origin) in raw.items():
        values[section][key] = _parsed(section, key, text, origin)
    return values


def _parsed(section: str, key: str, raw: str, origin: str) -> Any:
    option = SCHEMA[section][key]
    try:
        return option.parse(raw)
    except ValueError as e:
        shown = "'***'" if option.type is Secret else repr(raw)
        raise ConfigError(f"{origin}: [{section}] {key} = {shown} is invalid: {e}") from e


def with_local_zone(values: Values, env: Mapping[str, str]) -> Values:
    """``[streaming] naive_timezone = local`` resolved here, once, so that every reader sees one zone."""
    if values["streaming"]["naive_timezone"] == "local":
        values["streaming"]["naive_timezone"] = local_zone_name(env) or "UTC"
    return values


def local_zone_name(env: Mapping[str, str] | None = None) -> str | None:
    """This machine's IANA time zone name ($TZ, /etc/timezone, or where /etc/localtime links), or None
    when none of them names a zone Python knows."""
    env = os.environ if env is None else env
    candidates = [env.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    except OSError:
        pass
    for name in candidates:
        if name and not name.startswith("/"):
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return None


# --- cross-checks: settings that are valid alone but not together, or not on this machine -----------

def cross_check(cfg: Config, raw: Layer) -> None:
    """The checks that need more than one setting, or the file system."""
    check_folders(cfg, raw)
    check_lake_secret(cfg)
    check_thresholds(cfg)


def check_folders(cfg: Config, raw: Layer) -> None:
    """``[paths] data_dir`` and ``cache_dir`` are folders, or do not exist yet."""
    for key in ("data_dir", "cache_dir"):
        text, origin = raw["paths", key]
        folder = resolve_path(text, cfg.base_dir)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{origin}: [paths] {key} = {text!r} is invalid: {folder} is a file, "
                              "expected a folder (or a path that does not exist yet)")


def check_lake_secret(cfg: Config) -> None:
    """A lake on object storage needs its secret key at once, not at the first write."""
    lake = cfg.paths.lake or ""
    if lake.startswith("s3a://") and cfg.s3.secret_key is None:
        raise ConfigError(f"[paths] lake = {lake!r} is on object storage, and its secret key is not set: export "
                          "LAKEHOUSE_S3_SECRET_KEY (it is read from the environment only)")


def check_thresholds(cfg: Config) -> None:
    """A client reaches Standard before Premium."""
    analytics = cfg.analytics
    if analytics.standard_threshold > analytics.premium_threshold:
        raise ConfigError(
            f"[analytics] standard_threshold = {analytics.standard_threshold:g} is invalid: expected at most "
            f"premium_threshold ({analytics.premium_threshold:g})")
