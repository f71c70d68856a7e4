"""Logging: the access log (with request id and time taken) and process log set-up."""

from __future__ import annotations

import logging
import logging.config
import re
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web, web_log
from aiohttp.abc import AbstractAccessLogger

from aiosite.keys import REQUEST_ID
from aiosite.settings import Settings
from aiosite.web.request_id import current_request_id
from aiosite.web.responses import dumps

ACCESS_LOGGER = "aiosite.access"
_SECRET_PARAM = re.compile(
    r"((?:^|&)[^=&]*(?:pass|secret|token|key|auth|code|signature|session)[^=&]*=)[^&]*", re.I
)


def _masked_query(query: str) -> str:
    return _SECRET_PARAM.sub(r"\1********", query)


class AccessLogger(AbstractAccessLogger):
    """One line a request: method, path, status, bytes, milliseconds and request id.

    Query values whose names look secret (token, password, key, ...) are masked.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        query = request.query_string
        path = f"{request.path}?{_masked_query(query)}" if query else request.path
        request_id = request.get(REQUEST_ID, "-")
        self.logger.info(
            '%s "%s %s" %s %s %.1fms',
            request.remote,
            request.method,
            path,
            response.status,
            response.body_length,
            time * 1000,
            extra={
                "request_id": request_id,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class FormattedAccessLogger(web_log.AccessLogger):
    """One line a request in the format of ``server.access_log_format`` (aiohttp's
    directives: ``%a %t %r %s %b %T %Tf %D %{Header}i %{Header}o``); the request id is
    ``%{X-Request-ID}o``, which every response carries. Secret-looking query values in
    ``%r`` are masked, as in the default line."""

    def _format_line(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, _masked_request_line(value) if key == "first_request_line" else value)
            for key, value in super()._format_line(request, response, time)
        ]

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            values = tuple(value for _, value in self._format_line(request, response, time))
            # The fields of aiosite's line, so that JSON logs keep them whatever the format.
            self.logger.info(
                self._log_format % values,
                extra={
                    "request_id": request.get(REQUEST_ID, "-"),
                    "status": response.status,
                    "duration_ms": round(time * 1000, 3),
                },
            )
        except Exception:
            self.logger.exception("Error in logging")


def _masked_request_line(line: str) -> str:
    head, sep, query = line.partition("?")
    if not sep:
        return line
    query, space, version = query.rpartition(" ")
    return f"{head}?{_masked_query(query)}{space}{version}"


def access_log_options(log_format: str | None) -> dict[str, Any]:
    """A runner's ``access_log_class`` (and ``access_log_format``) for the
    ``server.access_log_format`` setting: None, aiosite's line (``AccessLogger``)."""
    if log_format is None:
        return {"access_log_class": AccessLogger}
    return {"access_log_class": FormattedAccessLogger, "access_log_format": log_format}


class ThrottledLog:
    """At most ``burst`` lines every ``window`` seconds: for what clients can cause at
    will (malformed requests), which must not fill the disk nor bury the real errors.
    The next line after a window says how many were held back."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, window: float = 60.0) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self._started = -window
        self._logged = 0
        self._held_back = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._started >= self.window:
            if self._held_back:
                self.logger.warning(
                    "%d more like the lines above were not logged in the last %d seconds",
                    self._held_back,
                    self.window,
                )
            self._started = now
            self._logged = self._held_back = 0
        if self._logged < self.burst:
            self._logged += 1
            self.logger.warning(message, *args)
        else:
            self._held_back += 1


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record, ``-`` outside requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key in ("status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return dumps(entry).decode()


def configure_logging(settings: Settings) -> None:
    """Set up the process's logging from ``logging:`` settings (servers and CLI only)."""
    formatter: dict[str, Any]
    if settings.logging.format == "json":
        formatter = {"()": JsonFormatter}
    else:
        formatter = {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"}
    access_level = "INFO" if settings.server.access_log else "WARNING"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"default": formatter},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "filters": ["request_id"],
                },
            },
            "root": {"handlers": ["console"], "level": settings.logging.level},
            "loggers": {
                ACCESS_LOGGER: {"level": access_level},
                "aiohttp.access": {"level": "WARNING"},
            },
        }
    )
