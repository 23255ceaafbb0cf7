"""An LED meter held against the register of the same meter (METERS'
`register_meter`): the drift between the pulses the LED counted and the
energy the register advanced.

Every `drift_check_s` the register meter's newest committed reading is
recorded as a register reading of the LED meter (as `power.py register`
would record it by hand), so --status and the report show the drift as
they show a reading typed in: kWh, per cent, pulses missed or extra. Over
the last day (or all readings, when there is less), a drift of more pulses
than `drift_warn_pulses_per_day` is logged once per streak. With
`auto_rebase`, a drift of missed pulses re-bases the LED's count on the
register; pulses counted extra only warn, as re-basing would lower
energy_kwh and a total never goes down.

Run by the main thread on a connection of its own, as `power.py register`
runs beside the daemon; the monitor takes up a new offset within a second.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Dict, List, Optional

from config.settings import MeterSetup
from core import register
from core.journal import open_schema

DAY_S = 86400.0


class DriftWatch:
    def __init__(self, path: str, meters: List[MeterSetup], log: logging.Logger):
        self.path = path
        self.log = log
        self.pairs = [m for m in meters if m.compare is not None]
        self.rates: Dict[str, float] = {}  # pulses a day, per LED meter
        self._checked: Dict[str, float] = {}
        self._warned: Dict[str, bool] = {}
        self._conn: Optional[sqlite3.Connection] = None

    def check(self) -> None:
        """Record and judge whichever comparisons are due (never raises)."""
        now = time.monotonic()
        for m in self.pairs:
            name = m.config.name
            assert m.compare is not None
            if now - self._checked.get(name, -1e18) < m.compare.check_s:
                continue
            self._checked[name] = now
            try:
                self._compare(m)
            except sqlite3.Error as exc:
                self.log.warning(
                    "meter %s: cannot compare with its register: %s", name, exc
                )

    def _compare(self, m: MeterSetup) -> None:
        assert m.compare is not None
        if self._conn is None:
            self._conn = open_schema(self.path)
        conn = self._conn
        led, source = m.config.name, m.compare.register_meter
        row = conn.execute(
            "SELECT time, energy_kwh FROM readings WHERE meter = ? AND NOT estimate "
            "ORDER BY seq DESC LIMIT 1",
            (source,),
        ).fetchone()
        if row is None:
            return
        when, kwh = row
        found = register.readings(conn, led)
        if found and found[-1].time >= when:
            return  # no new register reading since the last comparison
        if not conn.execute(
            "SELECT 1 FROM readings WHERE meter = ? AND time <= ? LIMIT 1", (led, when)
        ).fetchone():
            return  # the LED meter has no reading that early
        ppk = m.config.pulses_per_kwh
        text = f"{kwh:.4f}"
        rebase = False
        if found:
            newest = register.RegisterReading(
                led,
                when,
                kwh,
                register.resolution(text),
                register.pulses_at(conn, led, when),
                found[-1].offset_kwh,
                False,
            )
            base = found[0]
            for r in found:
                if r.time <= when - DAY_S:
                    base = r
            drift = register.Drift(newest, base, ppk)
            days = max((when - base.time) / DAY_S, 1.0)
            rate = drift.pulses / days
            self.rates[led] = rate
            behind = register.Drift(newest, found[-1], ppk).off_kwh > 0
            rebase = self._judge(m, drift, rate, base.time) and behind
        register.record(conn, led, text, when, ppk, m.config.energy_offset_kwh, rebase)
        if rebase:
            self.log.info(
                "meter %s: re-based on the register of %s: energy_kwh now %s kWh",
                led,
                m.compare.register_meter,
                text,
            )

    def _judge(self, m: MeterSetup, drift, rate: float, since: float) -> bool:
        """Warn once per streak past the bound; True to re-base."""
        assert m.compare is not None
        led, source = m.config.name, m.compare.register_meter
        if abs(rate) <= m.compare.warn_per_day:
            if self._warned.get(led):
                self.log.info(
                    "meter %s: drift against %s within bounds again", led, source
                )
            self._warned[led] = False
            return False
        if not self._warned.get(led):
            self.log.warning(
                "meter %s: %d pulses %s against the register of %s since %s "
                "(%.0f a day, more than drift_warn_pulses_per_day %g): check the "
                "LED sensor (power.py watch)%s",
                led,
                abs(drift.pulses),
                "missed" if drift.pulses > 0 else "extra",
                source,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(since)),
                abs(rate),
                m.compare.warn_per_day,
                "" if m.compare.auto_rebase else "; auto_rebase re-bases the count",
            )
            self._warned[led] = True
        # Upward only (the caller checks): missed pulses raise energy_kwh.
        return m.compare.auto_rebase

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
