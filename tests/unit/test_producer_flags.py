"""producer_ventes.py without a broker: its summary counts each kind of record sent (a stand-in for Kafka), its
flags for returns and cancellations, and the ratios it refuses in one line. Against the real broker:
tests/system/test_producer.py."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest

import producer_ventes
from lakehouse.ingest.producer import ProducerSettings, run
from lakehouse.ingest.simulator import SalesSimulator
from tests.conftest import make_config, write_config


class _Sent:
    """What kafka-python's future gives the delivery callbacks: acknowledged at once."""

    def add_callback(self, callback):
        callback(None)
        return self

    def add_errback(self, _errback):
        return self


class _FakeKafka:
    def __init__(self):
        self.values = []

    def send(self, _topic, key, value):
        self.values.append(value)
        return _Sent()

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def test_the_summary_counts_each_kind_of_record_sent(tmp_path: Path) -> None:
    settings = ProducerSettings.from_config(make_config(tmp_path), rate=None, count=5000, duration_s=None)
    sim = SalesSimulator(4, 100, return_ratio=0.2, cancel_ratio=0.1, early_corrections=0.2, duplicate_ratio=0.05)
    kafka = _FakeKafka()
    result = run(kafka, sim.records(), settings, threading.Event())
    summary = result.as_dict()
    events = [json.loads(v) for v in kafka.values]
    by_type = Counter(e.get("type_evenement", "vente") for e in events)
    assert summary["generated"] == summary["delivered"] == len(events) == 5000
    assert summary["sales"] + summary["injected"]["duplicate"] == by_type["vente"]
    assert (summary["returns"], summary["cancellations"]) == (by_type["retour"], by_type["annulation"])
    assert set(summary["injected"]) == {"duplicate"}  # corrections are events, not injected faults
    sold = set()
    early = 0
    for e in events:
        if "type_evenement" in e:
            early += e["vente_id"] not in sold
        else:
            sold.add(e["vente_id"])
    assert summary["early_corrections"] == early > 0
    line = result.summary_line()
    assert line.startswith("Summary: generated=5000 delivered=5000 failed=0 unsent=0 injected=duplicate:")
    assert (f" sales={summary['sales']} returns={summary['returns']} cancellations={summary['cancellations']} "
            f"early_corrections={early} ") in line


@pytest.mark.parametrize("argv, expected", [
    ([], (None, None, 0.0)),
    (["--return-ratio", "0.2", "--cancel-ratio", "0"], (0.2, 0.0, 0.0)),
    (["--early-corrections"], (None, None, 0.1)),
    (["--early-corrections", "0.5", "--count", "3"], (None, None, 0.5)),
    (["--early-corrections", "--count", "3"], (None, None, 0.1)),
])
def test_correction_flags(argv: list[str], expected: tuple) -> None:
    args = producer_ventes.parse_args(argv)
    assert (args.return_ratio, args.cancel_ratio, args.early_corrections) == expected


@pytest.mark.parametrize("argv, flag", [
    (["--return-ratio", "1.5"], "--return-ratio"), (["--cancel-ratio", "-0.1"], "--cancel-ratio"),
    (["--early-corrections", "2"], "--early-corrections"), (["--return-ratio", "nan"], "--return-ratio"),
    (["--cancel-ratio", "some"], "--cancel-ratio"),
])
def test_a_ratio_outside_0_1_is_refused(argv: list[str], flag: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        producer_ventes.parse_args(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert flag in last and "is not a ratio between 0 and 1" in last


def test_returns_and_cancellations_above_one_are_refused_in_one_line(tmp_path: Path, capsys,
                                                                     monkeypatch) -> None:
    # From the configuration file, then overridden by the environment, then by the flags: the line says
    # which values were in force.
    config = write_config(tmp_path / "c.ini", make_config(tmp_path), producer={"return_ratio": 0.6,
                                                                               "cancel_ratio": 0.6})
    monkeypatch.delenv("LAKEHOUSE_PRODUCER_RETURN_RATIO", raising=False)
    monkeypatch.delenv("LAKEHOUSE_PRODUCER_CANCEL_RATIO", raising=False)
    cases = [([], None, "(0.6) and the cancel ratio (0.6)"),
             ([], "0.7", "(0.7) and the cancel ratio (0.6)"),
             (["--return-ratio", "0.8"], "0.7", "(0.8) and the cancel ratio (0.6)")]
    for flags, env, said in cases:
        if env is not None:
            monkeypatch.setenv("LAKEHOUSE_PRODUCER_RETURN_RATIO", env)
        assert producer_ventes.main(["--config", str(config), "--count", "1", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("Configuration error: the return ratio ") and said in err
        assert "add up to more than 1" in err
