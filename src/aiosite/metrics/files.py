"""Prometheus multiprocess mode: each worker writes its series to files of its own in
``PROMETHEUS_MULTIPROC_DIR`` (its server's directory, ``<metrics.multiprocess_dir>/<master
pid>``), and a scrape of any worker merges its server's workers' files
(prometheus_client's ``MultiProcessCollector``).

The files are in prometheus_client's format, named ``counter_<pid>-aiosite-<token>.db``
and so on: the token keeps two sites of one process (and prometheus_client's own metrics
of the project, written beside them) out of each other's files. Gauges are summed over
the live workers (``livesum``): ``worker_exited`` removes a dead worker's gauges, while
its counters keep counting in the totals.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from aiosite.metrics.config import MetricsSettings
from aiosite.metrics.series import Family, Series
from aiosite.settings import Settings

if TYPE_CHECKING:
    from prometheus_client.mmap_dict import MmapedDict

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_SUFFIX = "-aiosite-"
# prometheus_client's file prefixes: the collector reads the metric type from them.
_PREFIXES = {"counter": "counter", "histogram": "histogram", "gauge": "gauge_livesum"}
# In a server's directory: its master's start token (pids are reused).
_OWNER = "master"


def multiprocess_dir() -> Path | None:
    """The multiprocess directory when the process runs in multiprocess mode."""
    value = os.environ.get(ENV_VAR)
    return Path(value) if value else None


def multiprocess_root(settings: Settings) -> Path:
    """``metrics.multiprocess_dir``, relative to the project: each server's master keeps
    its workers' files in a subdirectory of its own there."""
    path = Path(settings.section(MetricsSettings).multiprocess_dir)
    return path if path.is_absolute() else settings.project_dir / path


def prepare_multiprocess_dir(root: Path) -> Path:
    """This server's own directory in ``root``, ``<root>/<pid>``, created empty, for the
    server's master process before it forks workers (which it runs with
    ``PROMETHEUS_MULTIPROC_DIR`` set to the path returned).

    Two servers of one project (blue/green, or several on one host) each count only
    their own workers. The directories of servers that are no longer running are removed
    here; a server that stops cleanly removes its own (``release_multiprocess_dir``).
    """
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.db"):  # left by an aiosite that wrote them all here
        stale.unlink(missing_ok=True)
    pid = os.getpid()
    for path in root.iterdir():
        if path.name.isdigit() and path.is_dir():
            other = int(path.name)
            if other == pid or not _running(other, _read_token(path)):
                shutil.rmtree(path, ignore_errors=True)
    path = root / str(pid)
    path.mkdir()
    (path / _OWNER).write_text(_start_token(pid) or "")
    return path


def release_multiprocess_dir(path: Path) -> None:
    """Remove a server's directory (``prepare_multiprocess_dir``'s), when it stops."""
    shutil.rmtree(path, ignore_errors=True)


def _running(pid: int, token: str | None) -> bool:
    """Whether the server whose master was ``pid`` (started at ``token``) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    # A pid the system gave to another process since: it started at another time.
    now = _start_token(pid)
    return not token or now is None or now == token


def _read_token(path: Path) -> str | None:
    try:
        return (path / _OWNER).read_text().strip()
    except OSError:
        return None


def _start_token(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot, the 22nd field of
    /proc/<pid>/stat); None where the system does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: count after it.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def worker_exited(pid: int) -> None:
    """A worker process ended: its gauges leave the sums (its counters stay). For the
    server's master (gunicorn's ``child_exit``); nothing outside multiprocess mode."""
    directory = multiprocess_dir()
    if directory is None or not directory.is_dir():
        return
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    for path in directory.glob(f"gauge_live*_{pid}{_SUFFIX}*.db"):
        path.unlink(missing_ok=True)


class SeriesFiles:
    """Writes one site's series of this process to its multiprocess files, only the
    values that changed since the last write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._name = f"{os.getpid()}{_SUFFIX}{secrets.token_hex(4)}.db"
        self._files: dict[str, MmapedDict] = {}
        self._written: dict[tuple[str, str], float] = {}

    def write(self, series: Series) -> None:
        for family in series.families.values():
            self._write_family(family)

    def _write_family(self, family: Family) -> None:
        from prometheus_client.mmap_dict import mmap_key
        from prometheus_client.utils import floatToGoString

        name, doc, labelnames = family.name, family.documentation, list(family.labelnames)
        if family.kind == "histogram":
            upper = [*map(floatToGoString, family.bounds), floatToGoString(math.inf)]  # type: ignore[no-untyped-call]
            bucket_names = [*labelnames, "le"]
            for labelvalues, counts in family.buckets.items():
                values = list(labelvalues)
                for le, count in zip(upper, counts, strict=True):
                    key = mmap_key(name, f"{name}_bucket", bucket_names, [*values, le], doc)
                    self._put("histogram", key, count)
                key = mmap_key(name, f"{name}_sum", labelnames, values, doc)
                self._put("histogram", key, family.sums[labelvalues])
            return
        sample = f"{name}_total" if family.kind == "counter" else name
        for labelvalues, value in family.values.items():
            key = mmap_key(name, sample, labelnames, list(labelvalues), doc)
            self._put(_PREFIXES[family.kind], key, value)

    def _put(self, prefix: str, key: str, value: float) -> None:
        if self._written.get((prefix, key)) == value:
            return
        file = self._files.get(prefix)
        if file is None:
            from prometheus_client.mmap_dict import MmapedDict

            path = self.directory / f"{prefix}_{self._name}"
            file = self._files[prefix] = MmapedDict(str(path))  # type: ignore[no-untyped-call]
        file.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
        self._written[prefix, key] = value

    def close(self) -> None:
        for file in self._files.values():
            file.close()  # type: ignore[no-untyped-call]
        self._files.clear()


def collect_all(directory: Path) -> bytes:
    """The exposition of every process's files in ``directory`` (blocking file reads)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry)
