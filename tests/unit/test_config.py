"""The configuration loader: defaults, precedence, and every kind of bad value."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest

from lakehouse.platform.config import (
    PROJECT_DIR,
    SCHEMA,
    ConfigError,
    env_var_name,
    load_config,
    local_zone_name,
    parse_duration,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_file_is_empty(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), env={})
    assert cfg.kafka.bootstrap_servers == "localhost:9092"
    assert cfg.kafka.topic == "ventes_stream"
    assert cfg.kafka.partitions == 3
    assert cfg.spark.master == "local[*]"
    assert cfg.spark.timezone == "UTC"
    assert cfg.streaming.watermark_delay.seconds == 600
    assert cfg.streaming.fail_on_data_loss is True
    assert cfg.producer.seed is None
    assert cfg.data_dir == (tmp_path / "data").resolve()


def test_project_config_ini_documents_every_setting_with_its_default() -> None:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    parser.read(PROJECT_DIR / "config.ini", encoding="utf-8")
    written = {(s, k): v for s in parser.sections() for k, v in parser.items(s)}
    # Secrets (the Kafka password, the object store's key) come from the environment only: config.ini must
    # not even name them.
    defaults = {(s, k): o.default for s, opts in SCHEMA.items() for k, o in opts.items() if not o.env_only}
    assert written == defaults
    assert [(s, k) for s, opts in SCHEMA.items() for k, o in opts.items() if o.env_only] == [("kafka", "password"),
                                                                                         ("s3", "secret_key")]


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\ntopic = from_file\npartitions = 5\n[producer]\nrate = 2\n")
    env = {env_var_name("kafka", "topic"): "from_env", env_var_name("producer", "rate"): "7"}
    cfg = load_config(path, env=env, overrides={("kafka", "topic"): "from_flag",
                                                 ("producer", "rate"): None})
    assert (cfg.kafka.topic, cfg.kafka.partitions, cfg.producer.rate) == ("from_flag", 5, 7.0)


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\ntopic = via_env_path\n")
    assert load_config(env={"LAKEHOUSE_CONFIG": str(path)}).kafka.topic == "via_env_path"


@pytest.mark.parametrize("text, expected", [
    ("[kafak]\ntopic = x\n", r"unknown section \[kafak\]; allowed sections: kafka, spark"),
    ("[kafka]\ntopik = x\n", r"unknown key \[kafka\] 'topik'; allowed keys: bootstrap_servers"),
    ("[kafka]\npartitions = three\n", r"\[kafka\] partitions = 'three' is invalid: expected a whole number"),
    ("[kafka]\npartitions = 0\n", r"\[kafka\] partitions = '0' is invalid: expected at least 1"),
    ("[streaming]\nwatermark_delay = 10 minuts\n",
     r"\[streaming\] watermark_delay = '10 minuts' is invalid: expected a duration like '10 minutes'"),
    ("[streaming]\nfail_on_data_loss = maybe\n", r"fail_on_data_loss = 'maybe' is invalid: expected true or false"),
    ("[streaming]\nstarting_offsets = newest\n", r"expected one of earliest, latest"),
    ("[kafka]\nbootstrap_servers = localhost\n", r"bootstrap_servers = 'localhost' is invalid: expected host:port"),
    ("[producer]\nrate = -1\n", r"\[producer\] rate = '-1' is invalid: expected at least 0.001"),
    ("[kafka]\ntopic =\n", r"\[kafka\] topic = '' is invalid: a value is required"),
    ("[analytics]\nstandard_threshold = 600\n", r"standard_threshold = 600 is invalid: expected at most premium"),
    ("[kafka\n", r"cannot be parsed"),
    ("[producer]\nrate = nan\n", r"\[producer\] rate = 'nan' is invalid: expected a finite number"),
    ("[producer]\nrate = inf\n", r"\[producer\] rate = 'inf' is invalid: expected a finite number"),
    ("[kafka]\nbootstrap_servers = localhost:9092,localhost:70000\n",
     r"\[kafka\] bootstrap_servers = .* is invalid: port 70000 of localhost:70000 is not between 1 and 65535"),
    ("[spark]\nmaster = locl[2]\n", r"\[spark\] master = 'locl\[2\]' is invalid: expected Spark master"),
    ("[spark]\nmaster = local[0]\n", r"\[spark\] master = 'local\[0\]' is invalid"),
    ("[spark]\ntimezone = Mars/Olympus\n",
     r"\[spark\] timezone = 'Mars/Olympus' is invalid: expected a time zone id such as UTC"),
])
def test_bad_file_values_name_key_value_and_what_is_allowed(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text), env={})


@pytest.mark.parametrize("section, key, value", [
    ("spark", "master", "local"), ("spark", "master", "local[2]"), ("spark", "master", "local[*, 3]"),
    ("spark", "master", "spark://host-1:7077"), ("spark", "master", "yarn"),
    ("spark", "timezone", "Europe/Paris"), ("spark", "timezone", "+01:00"),
    ("kafka", "bootstrap_servers", "a:1,b:65535"), ("producer", "rate", "1e3"),
])
def test_good_values_pass(tmp_path: Path, section: str, key: str, value: str) -> None:
    cfg = load_config(write(tmp_path, f"[{section}]\n{key} = {value}\n"), env={})
    assert str(getattr(getattr(cfg, section), key)) == str(SCHEMA[section][key].parse(value))


@pytest.mark.parametrize("key", ["data_dir", "cache_dir"])
def test_a_path_that_is_a_file_is_refused(tmp_path: Path, key: str) -> None:
    (tmp_path / "notes.txt").write_text("not a folder", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"\[paths\] {key} = 'notes.txt' is invalid: .*notes.txt is a file, "
                                          "expected a folder"):
        load_config(write(tmp_path, f"[paths]\n{key} = notes.txt\n"), env={})
    assert load_config(write(tmp_path, f"[paths]\n{key} = not_yet_made\n"), env={})  # created later


def test_bad_environment_values_are_reported_with_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"environment LAKEHOUSE_KAFKA_PARTITIONS: \[kafka\] partitions"):
        load_config(path, env={"LAKEHOUSE_KAFKA_PARTITIONS": "x"})
    with pytest.raises(ConfigError, match=r"LAKEHOUSE_KAFKA_TOPICS is not a known setting"):
        load_config(path, env={"LAKEHOUSE_KAFKA_TOPICS": "x"})


def test_bad_flag_value_is_reported_as_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"command line: \[producer\] rate = 'fast'"):
        load_config(write(tmp_path, ""), env={}, overrides={("producer", "rate"): "fast"})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.ini", env={})


@pytest.mark.parametrize("text, seconds, spark", [
    ("10 minutes", 600, "600 seconds"), ("500 ms", 0.5, "500 milliseconds"), ("1 second", 1, "1 seconds"),
    ("2h", 7200, "7200 seconds"), ("7 days", 604800, "604800 seconds"), ("1.5 min", 90, "90 seconds"),
])
def test_durations(text: str, seconds: float, spark: str) -> None:
    duration = parse_duration(text)
    assert (duration.seconds, duration.spark(), str(duration)) == (seconds, spark, text)


def settings_read_by_the_code() -> set[tuple[str, str]]:
    """Every ``(section, key)`` the code reads: ``cfg.section.key``, ``s.key`` after ``s = cfg.section``,
    and the path settings through ``cfg.data_dir`` / ``cfg.cache_dir``."""
    read = set()
    files = [*PROJECT_DIR.glob("*.py"), *(PROJECT_DIR / "lakehouse").rglob("*.py")]
    for path in files:
        if path.is_relative_to(PROJECT_DIR / "lakehouse" / "platform" / "config"):  # the declarations themselves
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {t.id: n.value.attr for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and isinstance(n.value, ast.Attribute) and n.value.attr in SCHEMA
                   for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if isinstance(owner, ast.Attribute) and owner.attr in SCHEMA:
                read.add((owner.attr, node.attr))
            elif isinstance(owner, ast.Name) and owner.id in aliases:
                read.add((aliases[owner.id], node.attr))
            elif isinstance(owner, ast.Name) and owner.id == "cfg" and node.attr in SCHEMA["paths"]:
                read.add(("paths", node.attr))
    return read


def test_every_setting_is_read_by_some_code() -> None:
    declared = {(s, k) for s, opts in SCHEMA.items() for k in opts}
    dead = sorted(f"[{s}] {k}" for s, k in declared - settings_read_by_the_code())
    assert not dead, f"settings no code reads: {dead}"


def test_the_demo_runs_silver_continuously_and_silver_interval_is_streaming_silver_default(tmp_path: Path
                                                                                          ) -> None:
    import io

    import streaming_silver
    from lakehouse.ops import demo
    from lakehouse.platform.paths import Paths

    cfg = load_config(write(tmp_path, "[analytics]\nsilver_interval = 45 s\n"), env={})
    run = demo.Demo(cfg, demo.parse_args([]), io.StringIO())
    commands = demo.part_commands(None, 3.0, run.silver_interval, Paths.from_config(cfg))
    assert "--continuous" in commands["silver"] and "--interval" not in commands["silver"]
    periodic = demo.Demo(cfg, demo.parse_args(["--silver-interval", "10"]), io.StringIO())
    commands = demo.part_commands(None, 3.0, periodic.silver_interval, Paths.from_config(cfg))
    assert commands["silver"][commands["silver"].index("--interval") + 1] == "10"
    resolved = [streaming_silver.interval_seconds(streaming_silver.parse_args(a).interval, cfg)
                for a in ([], ["--interval"], ["--interval", "10"])]
    assert resolved == [None, 45, 10]


def test_naive_timezone_is_resolved_once_from_this_machine_or_given() -> None:
    # Issue #32: "local" becomes this machine's zone name when the configuration is loaded.
    assert load_config(env={"TZ": "Europe/Paris"}).streaming.naive_timezone == "Europe/Paris"
    assert load_config(env={"TZ": ":America/New_York"}).streaming.naive_timezone == "America/New_York"
    assert load_config(env={"LAKEHOUSE_STREAMING_NAIVE_TIMEZONE": "reject"}).streaming.naive_timezone == "reject"
    tokyo = load_config(env={"LAKEHOUSE_STREAMING_NAIVE_TIMEZONE": "Asia/Tokyo"})
    assert tokyo.streaming.naive_timezone == "Asia/Tokyo"
    found = load_config(env={"TZ": "Not/AZone"}).streaming.naive_timezone  # then /etc/timezone, /etc/localtime
    assert found == (local_zone_name({}) or "UTC")
    with pytest.raises(ConfigError, match=r"\[streaming\] naive_timezone = 'Mars/Olympus' is invalid: expected "
                                          "local, reject, or a time zone id"):
        load_config(env={"LAKEHOUSE_STREAMING_NAIVE_TIMEZONE": "Mars/Olympus"})


# --- config files in other encodings (issue #32) ----------------------------------------------------------

LATIN1_COMMENT = "[kafka]\n# Sujet des ventes (été)\ntopic = ventes_latin\n"


def test_a_bom_is_accepted_and_other_encodings_are_one_clear_error(tmp_path) -> None:
    bom = tmp_path / "bom.ini"
    bom.write_bytes(b"\xef\xbb\xbf" + LATIN1_COMMENT.encode("utf-8"))
    assert load_config(bom, env={}).kafka.topic == "ventes_latin"
    latin1 = tmp_path / "latin1.ini"
    latin1.write_bytes(LATIN1_COMMENT.encode("latin-1"))
    with pytest.raises(ConfigError) as bad:
        load_config(latin1, env={})
    assert str(bad.value) == (f"{latin1}: is not UTF-8 text: byte 0xe9 on line 2 (Latin-1 or Windows-1252?); "
                              "save it as UTF-8")
    for encoding in ("utf-16", "utf-16-be"):
        utf16 = tmp_path / f"{encoding}.ini"
        text = ("\ufeff" if encoding.endswith("be") else "") + LATIN1_COMMENT  # "utf-16" writes its own BOM
        utf16.write_bytes(text.encode(encoding))
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(utf16))}: is saved as UTF-16; save it as UTF-8"):
            load_config(utf16, env={})
