"""A fleet of power daemons publishing into one Mosquitto and one InfluxDB.

Where one Pi is not enough, each Pi runs its own power and all publish into
the same servers. This starts N real daemons (detached, each with its own
DATA_DIR and pidfile) with M simulated meters each at realistic loads,
against one Mosquitto and one InfluxDB on loopback. Mid-run the broker is
restarted (without persistence: every retained message is gone) and then
InfluxDB is stopped for a while. Afterwards it checks:

- completeness: every reading in each daemon's journal is in InfluxDB
  (same timestamps per meter), nothing left unsent at the end;
- retained state, availability and Home Assistant discovery of every meter
  back on the broker after its restart;
- no two connections sharing an MQTT client id, no two discovery configs
  sharing a unique_id;
- reconnect spread after the broker restart (from each meter's retained
  "online" coming back) and after InfluxDB's return (each daemon's first
  successful write, from its Prometheus /metrics);
- the load per meter: broker messages and bytes per second ($SYS), InfluxDB
  points and bytes per second (SHOW STATS), daemon CPU and memory.

Run: .venv/bin/python bench/fleet.py [--daemons 50] [--outage-s 60] ...
Prints a report, writes bench/results/fleet.json, exits 1 if a check failed.
tests/test_fleet.py runs the same with a handful of daemons.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Appended, not prepended: under pytest, bench/sinks.py must not hide the
# sinks package of src/.
for _path in (os.path.join(ROOT, "tests"), HERE):
    if _path not in sys.path:
        sys.path.append(_path)

import procfs  # noqa: E402
from servers import Influx, Mosquitto, free_port, require  # noqa: E402

POWER = os.path.join(ROOT, "src", "power.py")
RESULTS = os.path.join(HERE, "results", "fleet.json")
DATABASE = "fleet"
CONNECT_RE = re.compile(r"New client connected from \S+ as (\S+) ")
TAKEOVER = "already connected, closing old connection"


@dataclass
class FleetConfig:
    daemons: int = 50
    meters: int = 2  # per daemon
    warmup_s: float = 60.0  # before the broker restart
    between_s: float = 20.0  # after it, before InfluxDB stops
    outage_s: float = 60.0  # InfluxDB stopped
    settle_timeout_s: float = 240.0  # for every daemon to catch up
    speed: float = 1.0  # simulated meters' time factor (1: real time)
    watts: Tuple[float, float] = (150.0, 4000.0)  # mean loads drawn from
    pulses_per_kwh: float = 1000.0
    retry_max_s: float = 60.0  # the sinks' default
    seed: int = 1


@dataclass
class DaemonSetup:
    site: str
    meters: List[str]
    data_dir: str
    settings: str
    pidfile: str
    logfile: str
    metrics_port: int
    pid: int = 0


@dataclass
class Result:
    config: Dict[str, Any]
    figures: Dict[str, Any] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)
    checks: List[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        (self.checks if ok else self.failures).append(what)
        return ok


def spread(values: List[float]) -> Dict[str, float]:
    """min, median, max and standard deviation, rounded for a report."""
    if not values:
        return {}
    return {
        "n": len(values),
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "stdev": round(statistics.pstdev(values), 2),
    }


def per(count: Optional[int], divisor: float, places: int) -> Optional[float]:
    return None if count is None else round(count / divisor, places)


def scrape(port: int) -> Dict[str, float]:
    """A daemon's /metrics as {'name{labels}': value}; {} if it cannot."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def sys_counter(port: int, topic: str, timeout: float = 15.0) -> Optional[int]:
    """One of mosquitto's $SYS counters, fresh: the second message, as the
    first is the retained one (the broker runs with sys_interval 1)."""
    sub = require("mosquitto_sub", "mosquitto-clients")
    res = subprocess.run(
        [sub, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-C", "2"]
        + ["-W", str(int(timeout))],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
    )
    text = res.stdout.split()[-1:] or [""]
    return int(text[0]) if text[0].isdigit() else None


def retained(port: int, topic: str = "#", wait_s: int = 3) -> Dict[str, str]:
    sub = require("mosquitto_sub", "mosquitto-clients")
    res = subprocess.run(
        [sub, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-v"]
        + ["--retained-only", "-W", str(wait_s)],
        capture_output=True,
        text=True,
        timeout=wait_s + 30,
    )
    out = {}
    for line in res.stdout.splitlines():
        name, _, payload = line.partition(" ")
        out[name] = payload
    return out


def influx_stats(influx: Influx) -> Dict[str, int]:
    """InfluxDB's HTTP counters since it started (SHOW STATS)."""
    result = influx.query("SHOW STATS FOR 'httpd'", db="")["results"][0]
    for s in result.get("series", []):
        values = dict(zip(s["columns"], s["values"][0]))
        return {
            "points": int(values.get("pointsWrittenOK", 0)),
            "bytes": int(values.get("writeReqBytes", 0)),
            "writes": int(values.get("writeReq", 0)),
        }
    return {"points": 0, "bytes": 0, "writes": 0}


class OnlineWatch:
    """Records when each meter's retained "online" arrives (paho), to time
    the reconnects after a broker restart. Connects as soon as it can."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.port = port
        self.seen: Dict[str, float] = {}
        self._lock = threading.Lock()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"fleet-watch-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = lambda c, *a: c.subscribe("power/+/availability", 1)
        client.on_message = self._on_message
        self.client = client

    def _on_message(self, client, userdata, msg) -> None:
        if msg.payload == b"online":
            with self._lock:
                self.seen.setdefault(msg.topic, time.monotonic())

    def start(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.connect("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    def __init__(self, config: FleetConfig, workdir: Path, log=print) -> None:
        self.c = config
        self.dir = workdir
        self.say = log
        self.rng = random.Random(config.seed)
        self.result = Result(config=asdict(config))
        self.daemons: List[DaemonSetup] = []
        self.broker: Optional[Mosquitto] = None
        self.influx: Optional[Influx] = None
        self._first_run_log = 0

    # Set-up -------------------------------------------------------------------

    def _daemon(self, i: int) -> DaemonSetup:
        site = f"site{i:02d}"
        d = self.dir / site
        d.mkdir(parents=True)
        meters = [f"{site}-m{j}" for j in range(self.c.meters)]
        assert self.broker is not None and self.influx is not None
        setup = DaemonSetup(
            site=site,
            meters=meters,
            data_dir=str(d / "data"),
            settings=str(d / "settings.py"),
            pidfile=str(d / "power.pid"),
            logfile=str(d / "power.log"),
            metrics_port=free_port(),
        )
        names = {
            "METERS": [
                {
                    "name": m,
                    "pulses_per_kwh": self.c.pulses_per_kwh,
                    "input": {
                        "backend": "simulated",
                        "watts": round(self.rng.uniform(*self.c.watts)),
                        "speed": self.c.speed,
                        "seed": self.rng.randrange(1 << 30),
                    },
                }
                for m in meters
            ],
            "DATA_DIR": setup.data_dir,
            "SINKS": [
                {
                    "type": "influxdb",
                    "host": "127.0.0.1",
                    "port": self.influx.port,
                    "database": DATABASE,
                    "tags": {"site": site},
                    "retry_max_s": self.c.retry_max_s,
                },
                {
                    "type": "mqtt",
                    "host": "127.0.0.1",
                    "port": self.broker.port,
                    "retry_max_s": self.c.retry_max_s,
                },
            ],
            "METRICS": {"listen": f"127.0.0.1:{setup.metrics_port}"},
        }
        Path(setup.settings).write_text(
            "".join(f"{k} = {v!r}\n" for k, v in names.items())
        )
        return setup

    def _start_daemon(self, d: DaemonSetup) -> None:
        argv = [sys.executable, POWER, "--settings", d.settings]
        argv += ["--pidfile", d.pidfile, "--logfile", d.logfile]
        d.pid = procfs.start_daemon(argv, d.pidfile, timeout=120)

    def _wait(self, what: str, predicate, timeout: float, step: float = 0.5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(step)
        self.result.check(False, f"{what} within {timeout:g} s")
        return None

    def _meters(self) -> List[str]:
        return [m for d in self.daemons for m in d.meters]

    # The run --------------------------------------------------------------------

    def run(self) -> Result:
        r = self.result
        # $SYS counters every second, for the load figures.
        self.broker = Mosquitto(self.dir / "mqtt", extra=["sys_interval 1"])
        self.influx = Influx(self.dir / "influx")
        self.broker.start()
        self.influx.start()
        try:
            self._run()
        finally:
            for d in self.daemons:
                if d.pid and procfs.alive(d.pid):
                    procfs.stop_daemon(d.pid, 10)
            self.broker.stop()
            self.influx.stop()
        return r

    def _run(self) -> None:
        c, r = self.c, self.result
        broker, influx = self.broker, self.influx
        assert broker is not None and influx is not None
        n_meters = c.daemons * c.meters
        self.daemons = [self._daemon(i) for i in range(c.daemons)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self._start_daemon, self.daemons))
        r.figures["start_all_s"] = round(time.monotonic() - t0, 1)
        self.say(f"{c.daemons} daemons started in {r.figures['start_all_s']} s")

        def all_online() -> bool:
            msgs = retained(broker.port, "power/+/availability", 2)
            return sum(v == "online" for v in msgs.values()) == n_meters

        self._wait("every meter online", all_online, 120, 1)
        run_start = time.monotonic()
        at_start = influx_stats(influx)
        cpu0 = {d.site: procfs.cpu_ticks_s(d.pid) for d in self.daemons}
        self.say(f"all {n_meters} meters online; running {c.warmup_s:g} s")
        time.sleep(c.warmup_s)

        # Broker restart without persistence: every retained message is gone.
        self.say("restarting the broker")
        broker.stop()
        down = time.monotonic()
        self._first_run_log = len(broker.log())  # complete once it stopped
        broker.start()
        watch = OnlineWatch(broker.port)
        watch.start()
        up = time.monotonic()
        mqtt_t0 = time.monotonic()
        self._wait("every meter online again", lambda: len(watch.seen) >= n_meters, 180)
        watch.stop()
        r.figures["broker_down_s"] = round(up - down, 2)
        r.figures["mqtt_reconnect_s"] = spread([t - up for t in watch.seen.values()])
        self.say(f"broker back; reconnects {r.figures['mqtt_reconnect_s']}")
        time.sleep(c.between_s)

        # InfluxDB stopped for outage_s.
        before = influx_stats(influx)
        self.say(f"stopping InfluxDB for {c.outage_s:g} s")
        influx.stop()
        time.sleep(c.outage_s)
        influx.start()
        back_wall = time.time()
        back = time.monotonic()

        wrote: Dict[str, float] = {}

        def all_wrote() -> bool:
            for d in self.daemons:
                if d.site in wrote:
                    continue
                m = scrape(d.metrics_port)
                last = m.get('power_sink_last_write_timestamp_seconds{sink="influxdb"}')
                if last is not None and last > back_wall:
                    wrote[d.site] = time.monotonic() - back
            return len(wrote) == len(self.daemons)

        self._wait(
            "every daemon writing to InfluxDB again", all_wrote, c.settle_timeout_s, 0.2
        )
        r.figures["influx_reconnect_s"] = spread(list(wrote.values()))
        self.say(f"InfluxDB back; first writes {r.figures['influx_reconnect_s']}")

        def caught_up() -> bool:
            for d in self.daemons:
                m = scrape(d.metrics_port)
                for sink in ("influxdb", "mqtt"):
                    if m.get(f'power_sink_backlog_readings{{sink="{sink}"}}', 1) > 5:
                        return False
            return True

        self._wait("every daemon caught up", caught_up, c.settle_timeout_s, 1)
        r.figures["catch_up_s"] = round(time.monotonic() - back, 1)

        # Load: what the servers took per meter, and what the daemons cost.
        elapsed = time.monotonic() - run_start
        since_restart = time.monotonic() - mqtt_t0
        msgs = sys_counter(broker.port, "$SYS/broker/messages/received")
        nbytes = sys_counter(broker.port, "$SYS/broker/bytes/received")
        after = influx_stats(influx)
        # InfluxDB's counters restart with it: the run before it stopped,
        # plus everything since it came back.
        took = {k: before[k] - at_start[k] + after[k] for k in after}
        points, body, writes = took["points"], took["bytes"], took["writes"]
        cpu = [
            (procfs.cpu_ticks_s(d.pid) - cpu0[d.site]) / elapsed for d in self.daemons
        ]
        rss = [procfs.status_kib(d.pid, "VmRSS") for d in self.daemons]
        r.figures["load"] = {
            "run_s": round(elapsed, 1),
            "mqtt_messages_per_meter_s": msgs
            and round(msgs / since_restart / n_meters, 3),
            "mqtt_bytes_per_meter_s": nbytes
            and round(nbytes / since_restart / n_meters, 1),
            # Over the whole run: the outage's points arrive later, in bulk.
            "influx_points_per_meter_s": round(points / elapsed / n_meters, 3),
            "influx_bytes_per_meter_s": round(body / elapsed / n_meters, 1),
            "influx_writes_per_daemon_s": round(writes / elapsed / c.daemons, 3),
            "influx_bytes_per_point": round(body / points, 1) if points else None,
            "daemon_cpu_percent": spread([100 * x for x in cpu]),
            "daemon_rss_mib": spread([x / 1024 for x in rss]),
        }

        self._check_broker(broker)

        self.say("stopping the daemons")
        with ThreadPoolExecutor(8) as pool:
            stops = list(
                pool.map(lambda d: procfs.stop_daemon(d.pid, 10), self.daemons)
            )
        r.check(all(s is not None for s in stops), "every daemon stopped on SIGTERM")
        broker.stop()  # its log is complete once it has stopped
        self._check_client_ids(broker)
        self._check_influx(influx)

    # Checks ---------------------------------------------------------------------

    def _check_broker(self, broker: Mosquitto) -> None:
        r = self.result
        msgs = retained(broker.port, "#", 3)
        missing = []
        unique_ids: List[str] = []
        for meter in self._meters():
            state = msgs.get(f"power/{meter}/state")
            avail = msgs.get(f"power/{meter}/availability")
            configs = [
                msgs.get(f"homeassistant/sensor/power_{meter}/{k}/config")
                for k in ("power", "energy")
            ]
            if (
                state is None
                or json.loads(state).get("meter") != meter
                or avail != "online"
                or None in configs
            ):
                missing.append(meter)
                continue
            unique_ids += [json.loads(x)["unique_id"] for x in configs if x]
        r.check(
            not missing,
            "retained state, availability and discovery of every meter after "
            f"the broker restart (missing: {missing[:5]})",
        )
        dupes = len(unique_ids) - len(set(unique_ids))
        want = 2 * len(self._meters())  # a power and an energy sensor each
        r.check(
            dupes == 0 and len(set(unique_ids)) == want,
            f"{len(set(unique_ids))} distinct discovery unique_ids for "
            f"{want} sensors ({dupes} shared)",
        )

    def _check_client_ids(self, broker: Mosquitto) -> None:
        r = self.result
        log = broker.log()
        runs = [log[: self._first_run_log], log[self._first_run_log :]]
        ours = [
            [cid for cid in CONNECT_RE.findall(run) if cid.startswith("power-")]
            for run in runs
        ]
        n_meters = self.c.daemons * self.c.meters
        for i, ids in enumerate(ours):
            if not ids:
                continue
            r.check(
                len(set(ids)) == n_meters,
                f"broker {('before', 'after')[i]} its restart: {len(set(ids))} "
                f"distinct client ids for "
                f"{n_meters} meters",
            )
        r.check(TAKEOVER not in log, "no client id taken over by another client")
        r.figures["mqtt_connects"] = sum(len(x) for x in ours)

    def _check_influx(self, influx: Influx) -> None:
        r = self.result
        got: Dict[str, set] = {}
        # An estimate's point has power_w and no pulses: select both, so
        # that every point comes back (a pulse's first has no power_w).
        result = influx.query(
            'SELECT "pulses", "power_w" FROM "power" GROUP BY "meter", "site"',
            db=DATABASE,
        )["results"][0]
        sites_ok = True
        for s in result.get("series", []):
            meter, site = s["tags"]["meter"], s["tags"]["site"]
            sites_ok &= meter.startswith(site + "-")
            got[meter] = {row[0] for row in s["values"]}
        r.check(sites_ok, "every point tagged with its daemon's site")
        missing = extra = total = unsent = 0
        for d in self.daemons:
            conn = sqlite3.connect(
                f"file:{d.data_dir}/journal.sqlite3?mode=ro", uri=True
            )
            try:
                cursor = conn.execute(
                    "SELECT seq FROM cursors WHERE sink = 'influxdb'"
                ).fetchone()
                last = conn.execute("SELECT max(seq) FROM readings").fetchone()[0]
                unsent += last - (cursor[0] if cursor else 0)
                written = cursor[0] if cursor else 0
                for meter in d.meters:
                    rows = conn.execute(
                        "SELECT seq, time FROM readings WHERE meter = ?", (meter,)
                    ).fetchall()
                    times = {round(t * 1000) for _, t in rows}
                    sent = {round(t * 1000) for seq, t in rows if seq <= written}
                    total += len(times)
                    missing += len(sent - got.get(meter, set()))
                    extra += len(got.get(meter, set()) - times)
            finally:
                conn.close()
        r.figures["readings"] = total
        # Readings committed in the last moments before the stop may wait in
        # the journal for the next start: counted, not lost.
        r.figures["unsent_at_stop"] = unsent
        r.check(
            missing == 0 and extra == 0 and total > 0,
            f"InfluxDB holds every reading the sink's journal position has "
            f"passed, {total - unsent} of {total} (missing {missing}, "
            f"foreign {extra})",
        )


def report(r: Result) -> str:
    c = r.config
    f = r.figures
    lines = [
        f"fleet: {c['daemons']} daemons x {c['meters']} meters, simulated "
        f"{c['watts'][0]:g}-{c['watts'][1]:g} W at speed {c['speed']:g}, "
        f"{c['pulses_per_kwh']:g} pulses/kWh; one Mosquitto, one InfluxDB 1.x",
        f"  started in {f.get('start_all_s')} s; broker restarted (down "
        f"{f.get('broker_down_s')} s); InfluxDB stopped {c['outage_s']:g} s",
        f"  MQTT reconnect after the broker restart (s): {f.get('mqtt_reconnect_s')}",
        f"  first InfluxDB write after its return (s): {f.get('influx_reconnect_s')}",
        f"  every daemon caught up {f.get('catch_up_s')} s after InfluxDB returned",
        f"  readings checked: {f.get('readings')}, waiting in journals at "
        f"stop: {f.get('unsent_at_stop')}",
    ]
    for k, v in (f.get("load") or {}).items():
        lines.append(f"  {k}: {v}")
    lines += [f"  ok   {x}" for x in r.checks]
    lines += [f"  FAIL {x}" for x in r.failures]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    d = FleetConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--daemons", type=int, default=d.daemons)
    p.add_argument("--meters", type=int, default=d.meters)
    p.add_argument("--warmup-s", type=float, default=d.warmup_s)
    p.add_argument("--between-s", type=float, default=d.between_s)
    p.add_argument("--outage-s", type=float, default=d.outage_s)
    p.add_argument("--speed", type=float, default=d.speed)
    p.add_argument("--retry-max-s", type=float, default=d.retry_max_s)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args()


def main() -> int:
    a = parse_args()
    config = FleetConfig(
        daemons=a.daemons,
        meters=a.meters,
        warmup_s=a.warmup_s,
        between_s=a.between_s,
        outage_s=a.outage_s,
        speed=a.speed,
        retry_max_s=a.retry_max_s,
    )
    work = Path(tempfile.mkdtemp(prefix="power-fleet-"))
    try:
        result = Fleet(config, work).run()
    finally:
        if not a.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    text = report(result)
    print(text)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(asdict(result), f, indent=2)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
