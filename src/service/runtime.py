"""Wiring a running monitor: journal, meters, inputs, LEDs, sinks; and the
orderly stop. Everything here starts after any fork, in the final process.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import select
import signal
import sqlite3
import time
from typing import IO, Callable, Dict, List, Optional, Union

from config.settings import MeterSetup, Settings
from core import ownfiles
from core.csvformat import format_time
from core.exits import EXIT_FAILURE, EXIT_OK
from core.journal import Journal, JournalError, JournalReader, Row, journal_path
from core.judge import EdgeJudge, FrameJudge
from core.live import LiveFeed, ReadingQueue
from core.meter import Meter
from core.monitor import Monitor
from core.regmeter import RegisterMeter
from core.version import VERSION
from inputs.base import InputBackend, InputError, LedOutput
from service import runstate
from service.drift import DriftWatch
from service.leds import StatusLeds
from service.logsetup import RedactSecrets
from service.pidcheck import LOCKFILE
from service.sinkstate import SinkStates
from sinks.base import Sink
from sinks.console import ConsoleSink
from sinks.runner import AHEAD_ROWS, Backoff, LiveRunner, SinkRunner
from web import listen
from web.metrics import Exporter
from web.page import InputInfo, Page
from web.server import Route, Server
from web.state import CommitLog, StateReader

SYNC_STATES_S = 5.0  # how often sinks' failure streaks are saved for --status

STOP_BUDGET_S = 0.4  # SIGTERM to exit, all parts: well under a second
# Console lines waiting to be shown; a replay waits for them as for a sink
# (its pause starts well below this), a live meter never comes near it.
CONSOLE_QUEUE = 100_000


class StartError(Exception):
    """The monitor cannot start; the message says why and what to do."""


def lock_data_dir(data_dir: str) -> IO[str]:
    """Hold an exclusive lock on DATA_DIR for this process's life, so two
    monitors never write one journal (whatever pidfiles they use)."""
    path = os.path.join(data_dir, LOCKFILE)
    f = os.fdopen(ownfiles.open_own(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+")
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
        pidfile: Optional[str] = None,
    ) -> None:
        self.settings = settings
        self.pidfile = pidfile  # for --status: the daemon's own
        self.log = log
        self.console = console
        self.tell = tell  # the terminal, when the log goes elsewhere
        self.states: Optional[SinkStates] = None
        # Set by signal handlers, which take no lock (see handle_signal).
        self.stop_requested = False
        self.reopen_requested = False
        self.commit_requested = False  # SIGUSR1: power.py register
        # Wakes the main loop: a signal handler or the monitor writes a byte.
        # Never closed: a late signal or a monitor that outlived stop() must
        # not write into another file that got the same descriptor number.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.journal: Optional[Journal] = None
        self.inputs: List[InputBackend] = []
        self.runners: List[SinkRunner] = []
        self.monitor: Optional[Monitor] = None
        self.meters: List[Union[Meter, RegisterMeter]] = []
        self.leds: Optional[StatusLeds] = None
        self.commits: Optional[CommitLog] = None  # with METRICS or WEB only
        self.exporter: Optional[Exporter] = None
        self.page: Optional[Page] = None
        self.servers: List[Server] = []
        self.judges: Dict[str, Union[EdgeJudge, FrameJudge]] = {}  # WEB's sensor view
        # The live path: each reading as the meter makes it, to the console,
        # the LIVE sinks (MQTT's power) and the metrics' gauges.
        self.feed = LiveFeed()
        self.console_runner: Optional[LiveRunner] = None
        self._lock: Optional[IO[str]] = None
        self._started_inputs: List[InputBackend] = []
        self.drift: Optional[DriftWatch] = None  # LED meters against registers

    # Signals ----------------------------------------------------------------

    def handle_signal(self, signum: int, frame=None) -> None:
        """Signal handler: notes the signal and wakes the main loop; the
        loop does the work. It takes no lock: Python runs it in the main
        thread between two bytecodes, perhaps while that thread holds one
        (setting a threading.Event there could wait for ever on the Event's
        own lock, and SIGTERM then never stopped power)."""
        if signum == signal.SIGHUP:
            self.reopen_requested = True
        elif signum == signal.SIGUSR1:
            self.commit_requested = True
        else:
            self.stop_requested = True
        self.wake()

    def wake(self) -> None:
        """Wake the main loop; safe from a signal handler and any thread."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # the pipe is full (it wakes anyway), or closed
            pass

    def _sleep(self, timeout: float) -> None:
        """Wait up to `timeout` for a wake(), then take its bytes (before the
        flags are read again, so no wake-up is lost)."""
        select.select([self._wake_r], [], [], timeout)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:  # empty (BlockingIOError), or closed
            pass

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
        if self.console:
            lines = ReadingQueue(CONSOLE_QUEUE)
            self.feed.subscribe(lines)
            console = ConsoleSink("console", {}, self.log)
            self.console_runner = LiveRunner(console, lines, self.log)
        watched = self.feed.active or s.metrics is not None or s.web is not None
        if s.metrics is not None or s.web is not None:
            self.commits = CommitLog(
                self.journal.last_seq, {m.config.name: m.pulses for m in meters}
            )
        if s.web is not None:
            self.judges = {
                m.config.name: FrameJudge(m)
                if isinstance(m, RegisterMeter)
                else EdgeJudge(m)
                for m in meters
            }
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
            on_done=self.wake,
            live=self.feed.publish if watched else None,
            judges=[self.judges.get(m.config.name) for m in meters],
        )
        self.monitor.load_offsets()  # register readings win over the settings
        if any(m.compare is not None for m in s.meters):
            self.drift = DriftWatch(journal_path(s.data_dir), s.meters, self.log)
        for runner in self.runners:
            runner.start()
        if self.console_runner is not None:
            self.console_runner.start()
        self.monitor.start()
        self.leds.start()
        if s.metrics is not None or s.web is not None:
            self._start_http()
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
        try:  # for --status and a second start: what this daemon is
            runstate.record(
                journal_path(s.data_dir),
                os.getpid(),
                self.pidfile,
                [
                    (m.config.name, b.describe(), m.input_note)
                    for m, b in zip(s.meters, self.inputs)
                ],
            )
        except sqlite3.Error as exc:
            self.log.warning("cannot record the start for --status: %s", exc)

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

    def _start_http(self) -> None:
        """/metrics and the page, each where its setting says; when both
        name one address, one server answers both (the page takes /)."""
        s = self.settings
        assert self.commits is not None and self.monitor is not None
        configured = {x.name for x in s.sinks}
        reader = StateReader(
            self.monitor,
            [r for r in self.runners if r.name in configured],
            self.journal,
            self.commits,
            self.feed,
        )
        if self.drift is not None:
            reader.drift = self.drift.rates
        endpoints: Dict[tuple, Dict[str, Route]] = {}
        names: Dict[tuple, str] = {}
        if s.metrics is not None:
            self.exporter = Exporter(s.metrics, reader, self.log)
            where = (s.metrics.host, s.metrics.port)
            endpoints[where] = self.exporter.routes()
            names[where] = "METRICS['listen']"
        if s.web is not None:
            inputs = [
                InputInfo(
                    m.config.name,
                    backend.describe(),
                    m.input_note,
                    m.input_class.REGISTER,
                )
                for m, backend in zip(s.meters, self.inputs)
            ]
            self.page = Page(
                s.web,
                [m.config for m in s.meters],
                self.feed,
                reader,
                journal_path(s.data_dir),
                self.judges,
                inputs,
                RedactSecrets(s.secrets).redact,
                VERSION,
                self.log,
            )
            where = (s.web.host, s.web.port)
            endpoints[where] = {**endpoints.get(where, {}), **self.page.routes()}
            names.setdefault(where, "WEB['listen']")
        for (host, port), routes in endpoints.items():
            try:
                server = Server((host, port), routes, self.log, "http")
            except OSError as exc:
                raise StartError(
                    f"{names[(host, port)]} = {listen.where(host, port)!r}: cannot "
                    f"listen there ({exc.strerror}); stop what uses the port or "
                    "choose another"
                ) from None
            if self.page is not None and (host, port) == (s.web.host, s.web.port):
                self.page.attach(server)
            server.start()
            self.servers.append(server)
            self.log.info(
                "serving %s on http://%s",
                ", ".join(sorted(p for p in routes if not p.startswith("/api"))),
                listen.where(host, port),
            )

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
            feed=self.feed,
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
        shown = len(self.console_runner.queue) if self.console_runner else 0
        return self.monitor.backlog() + self.journal.pending + max(ahead, shown, 0)

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
        while not self.stop_requested:
            if self.commit_requested:
                self.commit_requested = False
                monitor.request_commit()
            if self.reopen_requested:
                self.reopen_requested = False
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
            # Signals and the monitor's end wake this wait.
            self._sleep(SYNC_STATES_S)
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
        while time.monotonic() < deadline and not self.stop_requested:
            console = self.console_runner
            if all(r.cursor >= target for r in self.runners) and (
                console is None or not len(console.queue)
            ):
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
        for server in self.servers:
            server.stop()  # at once: it is woken
        if self.page is not None:
            self.page.close()
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
        if self.console_runner is not None:
            self.console_runner.stop()
        for runner in self.runners:
            if not runner.failing:  # a failing sink has nothing to flush
                runner.join(max(0.0, deadline - time.monotonic()))
        if self.console_runner is not None:
            self.console_runner.join(max(0.0, deadline - time.monotonic()))
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
