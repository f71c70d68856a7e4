"""Event-loop block detector: reports a handler that blocks the loop, with the line to blame.

A heartbeat callback on the loop notes the time every few milliseconds; a watchdog
thread wakes when the next heartbeat is overdue by more than the threshold and, while
the loop is still stuck, captures the loop thread's stack and the route being handled.
When the loop runs again the heartbeat measures how long it was stuck and records one
``BlockEvent`` for the whole block. Time spent in Python's garbage collector is left
out: a collection stalls every thread, but it is no line of the project's to blame.
With ``debug.detect_blocking`` off, ``setup`` adds nothing: no hook, no thread, no
callback. With it on, a request hook and a response hook of the core (both named
``aiosite.block_detector``) note the route each request task handles and forget it: no
middleware, so the core runs as in production.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import linecache
import logging
import os
import site
import sys
import sysconfig
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from aiohttp import web

from aiosite.hooks import hooks_of
from aiosite.settings import Settings

logger = logging.getLogger("aiosite.debug")

MAX_EVENTS = 1000
_HANDLE_RUN = asyncio.Handle._run.__code__


@dataclass(frozen=True, slots=True)
class CodeLine:
    """One frame of the blocked stack: where, and the source line."""

    filename: str
    lineno: int
    function: str
    line: str
    display: str  # the filename relative to the project when it is inside it

    def __str__(self) -> str:
        text = f"{self.display}:{self.lineno} in {self.function}"
        return f"{text}: {self.line}" if self.line else text


@dataclass(frozen=True, slots=True)
class BlockEvent:
    """One block of the event loop longer than the threshold."""

    duration_ms: float
    route: str | None
    # The innermost frame in the user's code (not the stdlib, site-packages or aiosite),
    # and the innermost frame overall; None when the watchdog could not see the stack.
    where: CodeLine | None
    innermost: CodeLine | None

    @property
    def location(self) -> str:
        if self.where is None and self.innermost is None:
            return "an unknown line (the watchdog thread did not get to run during the block)"
        shown = self.where or self.innermost
        text = str(shown)
        if self.innermost is not None and self.innermost != shown:
            text += f" (innermost: {self.innermost})"
        return text

    @property
    def summary(self) -> str:
        """``503 ms in route 'home:slow' at mysite/home/views.py:14 in slow: ...``"""
        place = f"in route {self.route!r}" if self.route is not None else "outside a request"
        return f"{self.duration_ms:.0f} ms {place} at {self.location}"

    def describe(self) -> str:
        return f"event loop blocked for {self.summary}"

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class _Sighting:
    """What the watchdog saw while the loop was stuck after heartbeat ``beat``."""

    beat: float
    route: str | None
    where: CodeLine | None
    innermost: CodeLine | None


class BlockDetector:
    """Watches one event loop; lives under ``keys.BLOCK_DETECTOR`` on the application."""

    def __init__(
        self, threshold_ms: int, *, project_dir: Path | None = None, log: bool = True
    ) -> None:
        self.threshold_ms = threshold_ms
        self._threshold = threshold_ms / 1000
        # Beat often enough that a block's measured length is within a tenth of the
        # threshold, but never so often that the heartbeat itself costs anything.
        self._interval = min(max(self._threshold / 10, 0.005), 0.05)
        self._project_dir = project_dir
        self._log = log
        self._lock = threading.Lock()
        self._events: deque[BlockEvent] = deque(maxlen=MAX_EVENTS)
        self.total = 0  # events ever recorded, also those the deque has dropped
        # Read by the watchdog thread; one task serves a connection's requests in turn.
        self._routes: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = (
            weakref.WeakKeyDictionary()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._last_beat = 0.0
        self._last_cpu = 0.0  # the loop thread's CPU time at the last beat
        self._gc_seconds = 0.0  # time spent collecting garbage since start()
        self._gc_started = 0.0
        self._last_gc = 0.0  # _gc_seconds at the last beat
        self._sighting: _Sighting | None = None
        self._stopped = False  # the watchdog saw the loop not running since the last beat
        self._handle: asyncio.TimerHandle | None = None
        self._boundary: CodeType | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def events(self) -> list[BlockEvent]:
        """The blocks seen so far, oldest first (the last ``MAX_EVENTS``)."""
        with self._lock:
            return list(self._events)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def events_since(self, total: int) -> list[BlockEvent]:
        """The events recorded after ``self.total`` was ``total``."""
        with self._lock:
            count = min(self.total - total, len(self._events))
            return list(self._events)[len(self._events) - count :] if count > 0 else []

    # -- lifecycle (on the loop's thread) ---------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the block detector is already running")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._last_beat, self._last_cpu = time.monotonic(), time.thread_time()
        self._last_gc = self._gc_seconds
        gc.callbacks.append(self._on_gc)
        self._stop.clear()
        # Beat at once: the first beat learns where the loop's machinery begins.
        self._loop.call_soon(self._beat)
        self._thread = threading.Thread(
            target=self._watch, name="aiosite-block-detector", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        gc.callbacks.remove(self._on_gc)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        thread.join()
        with self._lock:
            sighting, self._sighting = self._sighting, None
        if sighting is not None:  # stopped right after a block, before the next beat
            collecting = self._gc_seconds - self._last_gc
            stuck = time.monotonic() - sighting.beat - collecting
            if stuck > self._threshold:
                self._record(stuck, sighting)

    def note_route(self, request: web.Request) -> None:
        """Request hook: which route the request's task is handling, for the watchdog."""
        task = asyncio.current_task()
        if task is not None:
            self._routes[task] = request.match_info.route.name or request.path

    def forget_route(self, request: web.Request, response: web.StreamResponse) -> None:
        """Response hook: the request is answered. (A response the handler sent itself
        skips it; the task's next request replaces the entry, or the entry goes with
        the task.)"""
        task = asyncio.current_task()
        if task is not None:
            self._routes.pop(task, None)

    # -- the heartbeat (on the loop's thread) -------------------------------------------

    def _beat(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        # The frame that called this callback is where the loop's machinery begins
        # (asyncio's Handle._run, or whatever called uvloop's run_forever): the blame
        # for a block lies inside it, never in the frames around the loop.
        self._boundary = sys._getframe(1).f_code
        with self._lock:
            last, self._last_beat = self._last_beat, now
            last_cpu, self._last_cpu = self._last_cpu, cpu
            last_gc, self._last_gc = self._last_gc, self._gc_seconds
            sighting, self._sighting = self._sighting, None
            stopped, self._stopped = self._stopped, False
        collecting = self._last_gc - last_gc
        stuck = now - last - collecting
        if sighting is not None:
            if stuck > self._threshold:
                self._record(stuck, sighting)
        elif not stopped and cpu - last_cpu - collecting > self._threshold:
            # The watchdog never got to look (it needs the GIL, which C code on the loop
            # thread held), but the loop thread was busy all along: a block, without
            # the line to blame. A process that was merely suspended used no CPU.
            self._record(stuck, None)
        if not self._stop.is_set() and self._loop is not None:
            self._handle = self._loop.call_later(self._interval, self._beat)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Runs with the GIL held, in whichever thread collects; both phases of one
        # collection run in the same thread, one after the other.
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started:
            self._gc_seconds += time.monotonic() - self._gc_started
            self._gc_started = 0.0

    def _record(self, duration: float, sighting: _Sighting | None) -> None:
        event = BlockEvent(
            duration_ms=duration * 1000,
            route=sighting.route if sighting else None,
            where=sighting.where if sighting else None,
            innermost=sighting.innermost if sighting else None,
        )
        with self._lock:
            self._events.append(event)
            self.total += 1
        if self._log:
            logger.warning("%s", event.describe())

    # -- the watchdog (its own thread) ---------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._lock:
                beat, sighted = self._last_beat, self._sighting is not None
            deadline = beat + self._interval + self._threshold
            now = time.monotonic()
            if now >= deadline and not sighted:
                self._look(beat)
            # Past the deadline, keep looking: a loop seen waiting may start a block next.
            wait = deadline - now if now < deadline else self._interval
            if self._stop.wait(wait):
                return

    def _look(self, beat: float) -> None:
        """The heartbeat is late: find out whether the loop is blocked, and where."""
        loop = self._loop
        if loop is None:  # pragma: no cover - start() sets it before the thread starts
            return
        if not loop.is_running():  # between run_until_complete calls: not blocked
            with self._lock:
                if self._last_beat == beat:
                    self._stopped = True
            return
        frame = sys._current_frames().get(self._loop_thread)
        blamed = self._blame(frame)
        del frame
        # Waiting for I/O is no block, but do not clear the heartbeat to judge by CPU
        # time: the loop may be in select() for a moment after a block in C code that
        # kept the watchdog from running until now.
        if blamed is None:
            return
        task = asyncio.current_task(loop)
        route = self._routes.get(task) if task is not None else None
        with self._lock:
            if self._last_beat == beat:  # else the loop ran again meanwhile: no block
                self._sighting = _Sighting(beat, route, *blamed)

    def _blame(self, frame: FrameType | None) -> tuple[CodeLine | None, CodeLine | None] | None:
        """``(where, innermost)`` for a loop thread stuck in ``frame``; None when the
        loop is only waiting for I/O (a starved process, not a blocking call)."""
        boundary = self._boundary
        if boundary is None:
            # No heartbeat has run yet, so where the loop's machinery begins is unknown
            # and a loop idling in select() would look stuck; judge from the next look.
            return None
        inside = 0  # frames inside the loop's machinery, innermost first
        first = frame
        where = None
        while frame is not None and frame.f_code is not boundary:
            if where is None and _is_user_code(frame.f_code.co_filename):
                where = self._code_line(frame)
            frame = frame.f_back
            inside += 1
        if frame is None:  # asyncio's loop, outside any callback: in select()
            return None
        if inside == 0 and boundary is not _HANDLE_RUN:  # uvloop, in its C loop
            return None
        innermost = self._code_line(first) if first is not None else None
        return where, innermost

    def _code_line(self, frame: FrameType) -> CodeLine:
        filename = frame.f_code.co_filename
        lineno = frame.f_lineno or 0
        return CodeLine(
            filename,
            lineno,
            frame.f_code.co_name,
            linecache.getline(filename, lineno).strip(),
            self._display(filename),
        )

    def _display(self, filename: str) -> str:
        if self._project_dir is not None:
            try:
                return Path(filename).resolve().relative_to(self._project_dir).as_posix()
            except (ValueError, OSError):
                pass
        return filename


@functools.cache  # at the first block, not at import: sysconfig's data costs a site 5 ms
def _library_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    dirs.add(str(Path(__file__).resolve().parents[1]))  # aiosite itself
    prefixes = set()
    for directory in dirs:
        prefixes.add(os.path.join(os.path.abspath(directory), ""))
        prefixes.add(os.path.join(os.path.realpath(directory), ""))
    return tuple(sorted(prefixes))


@functools.lru_cache(maxsize=4096)
def _is_user_code(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen ...>, <string>
        return False
    prefixes = _library_prefixes()
    return not (filename.startswith(prefixes) or os.path.realpath(filename).startswith(prefixes))


BLOCK_DETECTOR: web.AppKey[BlockDetector] = web.AppKey("aiosite.block_detector", BlockDetector)


def setup(app: web.Application, settings: Settings) -> None:
    """Install the detector when ``debug.detect_blocking`` is on; otherwise do nothing."""
    if not settings.debug.detect_blocking:
        return
    detector = BlockDetector(
        settings.debug.block_threshold_ms, project_dir=settings.project_dir.resolve()
    )
    app[BLOCK_DETECTOR] = detector
    # Early (after the host check only) and late, so that a block in the other hooks is
    # also put down to the route.
    hooks = hooks_of(app)
    hooks.add_request_hook(detector.note_route, name="aiosite.block_detector", before="*")
    hooks.add_response_hook(detector.forget_route, name="aiosite.block_detector", after="*")

    async def detector_ctx(app: web.Application) -> AsyncIterator[None]:
        detector.start()
        try:
            yield
        finally:
            detector.stop()

    app.cleanup_ctx.append(detector_ctx)
