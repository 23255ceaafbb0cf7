"""Wiring a running monitor: journal, meters, inputs, LEDs, sinks; and the
orderly stop. Everything here starts after any fork, in the final process.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import signal
import threading
import time
from typing import IO, Callable, Dict, List, Optional, Union

from config.settings import MeterSetup, Settings
from core.csvformat import format_time
from core.exits import EXIT_FAILURE, EXIT_OK
from core.journal import Journal, JournalError, JournalReader, Row, journal_path
from core.meter import Meter
from core.monitor import Monitor
from core.regmeter import RegisterMeter
from inputs.base import InputBackend, InputError, LedOutput
from service.drift import DriftWatch
from service.leds import StatusLeds
from service.logsetup import RedactSecrets
from service.pidcheck import LOCKFILE
from service.sinkstate import SinkStates
from sinks.base import Sink
from sinks.console import ConsoleSink
from sinks.runner import AHEAD_ROWS, Backoff, SinkRunner
from web.metrics import Exporter
from web.state import CommitLog, StateReader

SYNC_STATES_S = 5.0  # how often sinks' failure streaks are saved for --status

STOP_BUDGET_S = 0.4  # SIGTERM to exit, all parts: well under a second


class StartError(Exception):
    """The monitor cannot start; the message says why and what to do."""


def lock_data_dir(data_dir: str) -> IO[str]:
    """Hold an exclusive lock on DATA_DIR for this process's life, so two
    monitors never write one journal (whatever pidfiles they use)."""
    path = os.path.join(data_dir, LOCKFILE)
    f = open(path, "a+")
    for _ in range(5):  # --status probes it for an instant
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            time.sleep(0.02)
    else:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise StartError(
            f"DATA_DIR {data_dir} is in use by power (pid {holder}); stop it "
            "first (power.py --kill) or give this one another DATA_DIR"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


class Service:
    """A running monitor. start() raises StartError; stop() always returns."""

    def __init__(
        self,
        settings: Settings,
        log: logging.Logger,
        console: bool = False,
        tell: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.console = console
        self.tell = tell  # the terminal, when the log goes elsewhere
        self.states: Optional[SinkStates] = None
        self.stop_requested = threading.Event()
        self.reopen_requested = threading.Event()
        self.wakeup = threading.Event()  # any of the above, or the monitor
        self.journal: Optional[Journal] = None
        self.inputs: List[InputBackend] = []
        self.runners: List[SinkRunner] = []
        self.monitor: Optional[Monitor] = None
        self.meters: List[Union[Meter, RegisterMeter]] = []
        self.leds: Optional[StatusLeds] = None
        self.commits: Optional[CommitLog] = None  # with METRICS only
        self.exporter: Optional[Exporter] = None
        self._lock: Optional[IO[str]] = None
        self._started_inputs: List[InputBackend] = []
        self.drift: Optional[DriftWatch] = None  # LED meters against registers

    # Signals ----------------------------------------------------------------

    def handle_signal(self, signum: int, frame=None) -> None:
        """Signal handler: only sets flags; the main loop does the work."""
        if signum == signal.SIGHUP:
            self.reopen_requested.set()
        else:
            self.stop_requested.set()
        self.wakeup.set()

    # Start --------------------------------------------------------------------

    def take_lock(self) -> None:
        """Hold DATA_DIR's lock (before the pidfile is written, so that
        --status and --kill always find the monitor by it)."""
        if self._lock is None:
            try:
                self._lock = lock_data_dir(self.settings.data_dir)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StartError(
                        f"the disk holding DATA_DIR {self.settings.data_dir} is "
                        "full; free some space and start again"
                    ) from None
                raise StartError(
                    f"cannot use DATA_DIR {self.settings.data_dir}: {exc}"
                ) from None

    def start(self) -> None:
        s = self.settings
        self.take_lock()
        try:
            held: Dict[str, int] = {}
            for setup in s.sinks:
                for meter, pulses in setup.cls.held_counts(setup.options).items():
                    held[meter] = max(pulses, held.get(meter, 0))
            self.journal = Journal(journal_path(s.data_dir), self.log, held)
        except OSError as exc:
            raise StartError(f"cannot use DATA_DIR {s.data_dir}: {exc}") from None
        except JournalError as exc:
            raise StartError(str(exc)) from None
        self.states = SinkStates(
            journal_path(s.data_dir), RedactSecrets(s.secrets).redact, self.tell
        )
        self.states.clear()
        meters = [self._meter(setup) for setup in s.meters]
        self.meters = meters
        for m, setup in zip(meters, s.meters):
            self.log.info(
                "meter %s: %d pulses so far, %.3f kWh",
                m.config.name,
                m.pulses,
                m.energy_kwh,
            )
            if setup.input_class.finite:
                # A replay adds only pulses after the newest one counted.
                m.counted_until = self.journal.last_pulse_time(m.config.name)
        try:
            self.inputs = [
                m.input_class(m.input_options, m.config, self.log) for m in s.meters
            ]
            self.leds = self._make_leds()
        except InputError as exc:
            raise StartError(str(exc)) from None
        self.runners = [self._runner(sink) for sink in self._sinks()]
        if s.metrics is not None:
            self.commits = CommitLog(
                self.journal.last_seq, {m.config.name: m.pulses for m in meters}
            )
        self.monitor = Monitor(
            meters,
            self.inputs,
            self.journal,
            on_commit=self._notify_runners,
            leds=self.leds,
            log=self.log,
            commit_interval_s=s.commit_interval_s,
            retention_s=s.retention_days * 86400.0,
            sink_names=[r.name for r in self.runners if r.sink.PERSISTENT],
            on_done=self.wakeup.set,
        )
        self.monitor.load_offsets()  # register readings win over the settings
        if any(m.compare is not None for m in s.meters):
            self.drift = DriftWatch(journal_path(s.data_dir), s.meters, self.log)
        for runner in self.runners:
            runner.start()
        self.monitor.start()
        self.leds.start()
        if s.metrics is not None:
            self._start_exporter()
        names = [m.config.name for m in s.meters]
        for i, backend in enumerate(self.inputs):
            for fed in backend.feeds():  # P1's gas meter: its frames too
                backend.attach(fed, self.monitor.edge_callback(names.index(fed)))
            try:
                backend.start(self.monitor.edge_callback(i), self._backlog)
            except InputError as exc:
                raise StartError(str(exc)) from None
            self._started_inputs.append(backend)
            self.log.info(
                "meter %s reads %s (%s)",
                s.meters[i].config.name,
                backend.describe(),
                s.meters[i].input_note,
            )

    def _meter(self, setup: MeterSetup) -> Union[Meter, RegisterMeter]:
        """A pulse meter, or one read from its register, going on from the
        journal's count (and export total)."""
        assert self.journal is not None
        name = setup.config.name
        export = self.journal.last_export(name)
        if setup.input_class.REGISTER:
            every = float(setup.input_options.get("every_s", 0.0))
            return RegisterMeter(setup.config, self.journal.pulses(name), export, every)
        exported = (
            None if export is None else round(export * setup.config.pulses_per_kwh)
        )
        return Meter(setup.config, self.journal.pulses(name), exported)

    def _start_exporter(self) -> None:
        s = self.settings
        assert s.metrics is not None and self.commits is not None
        configured = {x.name for x in s.sinks}
        reader = StateReader(
            self.monitor,
            [r for r in self.runners if r.name in configured],
            self.journal,
            self.commits,
        )
        if self.drift is not None:
            reader.drift = self.drift.rates
        exporter = Exporter(s.metrics, reader, self.log)
        try:
            exporter.start()
        except OSError as exc:
            raise StartError(
                f"METRICS['listen'] = {s.metrics.where!r}: cannot listen there "
                f"({exc.strerror}); stop what uses the port or choose another"
            ) from None
        self.exporter = exporter

    def _make_leds(self) -> StatusLeds:
        s = self.settings
        first = self.inputs[0]
        ready = first.led(s.ready_led) if s.ready_led is not None else None
        detect: Dict[str, LedOutput] = {}
        for setup, backend in zip(s.meters, self.inputs):
            if setup.detect_led is not None:
                detect[setup.config.name] = backend.led(setup.detect_led)
        return StatusLeds(ready, detect, s.blink_ms / 1000.0, self.log)

    def _sinks(self) -> List[Sink]:
        sinks: List[Sink] = []
        meters = [m.config.name for m in self.settings.meters]
        kinds = {
            m.config.name: m.config.kind
            for m in self.settings.meters
            if m.config.kind != "electricity"
        }
        for setup in self.settings.sinks:
            sink = setup.cls(setup.name, setup.options, self.log, meters)
            sink.kinds = kinds
            sinks.append(sink)
        if self.console:
            sinks.append(ConsoleSink("console", {}, self.log))
        return sinks

    def _runner(self, sink: Sink) -> SinkRunner:
        setup = next((x for x in self.settings.sinks if x.name == sink.name), None)
        path = journal_path(self.settings.data_dir)
        persistent = sink.PERSISTENT

        cursors = self.journal.cursors if self.journal is not None else None

        def open_reader() -> JournalReader:
            return JournalReader(path, sink.name, cursors, start_at_end=not persistent)

        return SinkRunner(
            sink,
            open_reader,
            batch_size=setup.batch_size if setup else 1000,
            flush_interval_s=setup.flush_interval_s if setup else 0.2,
            backoff=Backoff(random.Random(), cap=setup.retry_max_s if setup else 5.0),
            log=self.log,
        )

    def _backlog(self) -> int:
        """Readings held in memory or waiting for the slowest healthy sink,
        for inputs that can pause (replays, simulations): they wait rather
        than outrun it, so memory stays bounded however long the replay.
        Edges queued, readings pending for the next commit and rows the
        slowest healthy sink has not written (each in its hand-off) count;
        a failing sink's backlog waits in the journal, not in memory."""
        assert self.monitor is not None and self.journal is not None
        last = self.journal.last_seq
        lags = [last - max(r.cursor, 0) for r in self.runners if not r.failing]
        ahead = max(lags, default=0) - AHEAD_ROWS
        return self.monitor.backlog() + self.journal.pending + max(ahead, 0)

    def _notify_runners(self, rows: List[Row]) -> None:
        if self.commits is not None:
            self.commits.update(rows)
        for runner in self.runners:
            runner.offer(rows)

    # Run -----------------------------------------------------------------------

    def wait(self, on_ready: Callable[[], None] = lambda: None) -> int:
        """Run until a stop signal or, for a replay, until everything is
        written. Returns the exit code."""
        on_ready()
        monitor = self.monitor
        assert monitor is not None
        while not self.stop_requested.is_set():
            self.wakeup.clear()
            if self.reopen_requested.is_set():
                self.reopen_requested.clear()
                self.log.info("SIGHUP: reopening files")
                for runner in self.runners:
                    runner.request_reopen()
            if monitor.exhausted.is_set():
                self._report_already_counted()
                for runner in self.runners:
                    runner.drain()  # no more batching: write what is left
                return self._drain()
            if monitor.stopping.is_set():
                self.log.error("the monitor stopped; exiting")
                return EXIT_FAILURE
            if self.states is not None:
                self.states.sync(self.runners)
            if self.drift is not None:
                self.drift.check()
            # Signals interrupt this wait; everything that matters sets it.
            self.wakeup.wait(SYNC_STATES_S)
        self.log.info("stopping on signal")
        return EXIT_OK

    def _report_already_counted(self) -> None:
        for m in self.meters:
            if m.already_counted and m.counted_until is not None:
                self.log.warning(
                    "meter %s: %d replayed pulses at or before %s (the newest "
                    "pulse in the journal) are counted already and were "
                    "skipped; a replay only adds pulses after it",
                    m.config.name,
                    m.already_counted,
                    format_time(m.counted_until),
                )

    def _drain(self) -> int:
        """After a replay: wait until every sink has written every reading."""
        assert self.journal is not None
        target = self.journal.last_seq
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            if all(r.cursor >= target for r in self.runners):
                self.log.info("replay done: every sink has every reading")
                return EXIT_OK
            time.sleep(0.05)
        behind = [r.name for r in self.runners if r.cursor < target]
        if not behind:
            return EXIT_OK
        self.log.error(
            "replay done, but sink(s) %s did not write everything within "
            "DRAIN_TIMEOUT_S = %g s; the rest stays in the journal for the next run",
            ", ".join(behind),
            self.settings.drain_timeout_s,
        )
        return EXIT_FAILURE

    # Stop ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop inputs, commit the journal, let healthy sinks flush, in under
        a second; what a sink could not write waits in the journal."""
        deadline = time.monotonic() + STOP_BUDGET_S
        if self.exporter is not None:
            self.exporter.stop()  # at most one poll interval
        for backend in self._started_inputs:
            try:
                backend.stop()
            except Exception as exc:  # stopping must go on whatever a backend does
                self.log.warning("stopping %s: %s", backend.describe(), exc)
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor.join(max(0.1, deadline - time.monotonic() - 0.15))
            for line in self.monitor.stats():
                self.log.info("%s", line)
        for runner in self.runners:
            runner.stop()
        for runner in self.runners:
            if not runner.failing:  # a failing sink has nothing to flush
                runner.join(max(0.0, deadline - time.monotonic()))
        if self.leds is not None:
            self.leds.stop()
        monitor_done = self.monitor is None or self.monitor.join(0)
        if self.journal is not None and monitor_done:
            self.journal.close()  # else the monitor still owns it
        if self.states is not None:
            self.states.sync(self.runners)  # how each sink stood at the end
            self.states.close()
        elif self.journal is not None and self.journal.pending:
            self.log.error(
                "stopping before the journal could save %d readings held in "
                "memory; they are lost",
                self.journal.pending,
            )
        if self.drift is not None:
            self.drift.close()
        if self._lock is not None:
            self._lock.close()
