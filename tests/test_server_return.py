"""A server that comes back is written to within seconds, whatever the
backoff had grown to: between its long retries a runner asks the server,
cheaply, whether it is there (InfluxDB's /ping, a TCP connect for MQTT).

These drive one sink runner in the test's process, on a real journal and a
real InfluxDB or Mosquitto, with a backoff of five to ten minutes: only the
probe can find the server back before the test gives up.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Callable, List

import pytest
from servers import Influx, Mosquitto
from test_mqtt import retained

from core.journal import Journal, JournalReader, journal_path
from core.meter import Reading
from core.options import validate
from sinks.base import COMMON_OPTIONS
from sinks.influxdb import InfluxDBSink
from sinks.mqtt import MQTTSink
from sinks.runner import Backoff, SinkRunner

T0 = 1_700_000_000.0
LONG = 600.0  # the backoff: each retry waits 5 to 10 minutes


class Records(logging.Handler):
    """The runner's log lines, with the time each came."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[tuple] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.monotonic(), record.getMessage()))

    def count(self, text: str) -> int:
        return sum(text in line for _, line in self.lines)


def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


@pytest.fixture
def log():
    logger = logging.getLogger(f"power.test.{random.random()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Records()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


def journal_with(tmp_path: Path, log: logging.Logger, count: int) -> Journal:
    journal = Journal(journal_path(str(tmp_path)), log)
    add(journal, range(1, count + 1))
    return journal


def add(journal: Journal, pulses) -> None:
    for n in pulses:
        journal.append(Reading(T0 + n, "house", n, n / 1000, 1800.0, 2.0))
    journal.commit()


def runner_for(sink, tmp_path: Path, log, cap: float = LONG) -> SinkRunner:
    path = journal_path(str(tmp_path))
    return SinkRunner(
        sink,
        lambda: JournalReader(path, sink.name),
        batch_size=100,
        flush_interval_s=0.1,
        backoff=Backoff(random.Random(), base=cap, cap=cap),
        log=log,
    )


def sink_options(cls, **given) -> dict:
    return validate("SINKS[0]", given, {**COMMON_OPTIONS, **cls.OPTIONS})


def test_influxdb_back_after_an_outage_is_written_to_within_seconds(tmp_path, log):
    logger, records = log
    influx = Influx(tmp_path / "influx")  # not started: away
    options = sink_options(InfluxDBSink, type="influxdb", port=influx.port)
    journal = journal_with(tmp_path, logger, 20)
    runner = runner_for(
        InfluxDBSink("influx", options, logger, ["house"]), tmp_path, logger
    )
    runner.start()
    try:
        wait_for("the first failure", lambda: runner.failing, 30)
        influx.start()
        back = time.monotonic()
        wait_for("all 20 readings in InfluxDB", lambda: influx.count() == 20, 30)
        took = time.monotonic() - back
        # InfluxDB holds the points a moment before the runner has its answer.
        wait_for("the sink healthy again", lambda: not runner.failing, 10)
        assert records.count("the server answers again") == 1
        # The probe found it, not the retry (5 to 10 minutes away).
        assert took < 30
        add(journal, range(21, 31))
        wait_for("the next readings", lambda: influx.count() == 30, 30)
    finally:
        runner.stop()
        runner.join(10)
        journal.close()
        influx.stop()


def test_an_answering_server_that_fails_the_writes_gets_the_whole_backoff(
    tmp_path, log
):
    """No early retry for a server that is there: the backoff is what
    spares it (here a database that does not exist and may not be made)."""
    logger, records = log
    influx = Influx(tmp_path / "influx")
    influx.start()
    options = sink_options(
        InfluxDBSink,
        type="influxdb",
        port=influx.port,
        database="absent",
        create_database=False,
    )
    journal = journal_with(tmp_path, logger, 5)
    cap = 20.0  # retries 10 to 20 s apart; a probe would come within 4 s
    sink = InfluxDBSink("influx", options, logger, ["house"])
    runner = runner_for(sink, tmp_path, logger, cap=cap)
    runner.start()
    try:
        wait_for(
            "two failed writes", lambda: records.count("database not found") >= 1, 30
        )
        wait_for("a retry", lambda: records.count("retry failed") >= 1, 60)
        first = next(t for t, line in records.lines if "database not found" in line)
        retry = next(t for t, line in records.lines if "retry failed" in line)
        assert retry - first >= cap / 2
        assert records.count("the server answers again") == 0
    finally:
        runner.stop()
        runner.join(10)
        journal.close()
        influx.stop()


def test_mqtt_broker_back_after_an_outage_gets_the_state_within_seconds(tmp_path, log):
    """The broker goes away while the sink is connected (its client retries
    on its own timer, up to a minute apart); when it is back, the newest
    state is there within seconds."""
    logger, records = log
    broker = Mosquitto(tmp_path / "mqtt")
    broker.start()
    options = sink_options(MQTTSink, type="mqtt", port=broker.port)
    journal = journal_with(tmp_path, logger, 5)
    runner = runner_for(MQTTSink("mqtt", options, logger, ["house"]), tmp_path, logger)
    runner.start()

    def pulses() -> int:
        state = retained(broker.port, "power/house/state").get("power/house/state")
        return json.loads(state)["pulses"] if state else 0

    try:
        wait_for("the first state", lambda: pulses() == 5, 30)
        broker.stop()
        add(journal, range(6, 11))
        wait_for("the failure", lambda: runner.failing, 30)
        broker.start()  # on the same port, with nothing retained
        wait_for("the newest state", lambda: pulses() == 10, 30)
        assert records.count("the server answers again") == 1
        wait_for("the sink healthy again", lambda: not runner.failing, 10)
    finally:
        runner.stop()
        runner.join(10)
        journal.close()
        broker.stop()
