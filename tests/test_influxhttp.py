"""The InfluxDB sink's own HTTP client against a real influxd: what it
writes is stored, it survives a server restart on its kept-alive
connection, and the daemon runs the sink without the `influxdb` package
and requests (a third of a three-sink daemon's memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import POWER

from sinks.influxhttp import InfluxHTTP, InfluxHTTPError


def client(server, **kw) -> InfluxHTTP:
    options = dict(
        host="127.0.0.1",
        port=server.port,
        username=None,
        password=None,
        use_ssl=False,
        verify_ssl=True,
        timeout=5.0,
    )
    options.update(kw)
    return InfluxHTTP(**options)


def test_writes_lines_and_survives_a_server_restart(influx):
    c = client(influx)
    try:
        assert c.ping()
        c.create_database("plain")
        c.write("plain", ["m,meter=a pulses=1i 1700000000000"], "ms")
        influx.stop()
        influx.start()
        # The kept-alive connection is dead now: the write goes on a new one.
        c.write("plain", ["m,meter=a pulses=2i 1700000001000"], "ms")
    finally:
        c.close()
    assert influx.count(db="plain", measurement="m") == 2


def test_a_refused_write_carries_the_status_and_the_servers_words(influx):
    c = client(influx)
    try:
        c.create_database("typed")
        c.write("typed", ["m pulses=1i 1700000000000"], "ms")
        with pytest.raises(InfluxHTTPError) as info:
            c.write("typed", ['m pulses="text" 1700000001000'], "ms")
        with pytest.raises(InfluxHTTPError) as missing:
            c.write("no_such_db", ["m pulses=1i 1700000000000"], "ms")
    finally:
        c.close()
    assert info.value.code == 400 and "field type conflict" in info.value.content
    assert missing.value.code == 404
    assert "database not found" in missing.value.content


def test_the_sink_needs_neither_the_influxdb_package_nor_requests(influx):
    script = f"""
import sys
sys.path.insert(0, {str(POWER.parent)!r})
from sinks.influxdb import InfluxDBSink
from sinks.base import COMMON_OPTIONS
from core.options import validate
from core.meter import Reading
table = {{**COMMON_OPTIONS, **InfluxDBSink.OPTIONS}}
given = {{"type": "influxdb", "host": "127.0.0.1", "port": {influx.port},
         "database": "lean"}}
sink = InfluxDBSink("influxdb", validate("SINKS[0]", given, table), None)
sink.open()
sink.write([Reading(1700000000.0, "house", 1, 0.001, None, None)])
sink.close()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("influxdb", "requests",
      "urllib3")))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert influx.count(db="lean") == 1
