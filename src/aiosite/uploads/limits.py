"""``@accepts_uploads``: marks an upload route and sets its limits.

aiohttp's ``client_max_size`` bounds ``request.post()`` but not a multipart body read as
a stream, so the upload reader counts every byte itself; this decorator refuses a
declared Content-Length over the limit before a byte of the body is read.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from aiosite.handlers import request_of
from aiosite.keys import STREAMS_BODY, settings_of
from aiosite.uploads.config import UploadSettings, check_media_types
from aiosite.uploads.names import check_folder

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """A route's limits; None falls back to the ``uploads`` settings."""

    max_size: int | None = None
    allowed_types: tuple[str, ...] | None = None
    max_files: int | None = None
    folder: str = "uploads"

    def resolve(self, settings: UploadSettings, form_size: int) -> ResolvedLimits:
        max_size = self.max_size if self.max_size is not None else settings.max_size
        return ResolvedLimits(
            max_size=max_size,
            allowed_types=self.allowed_types or tuple(settings.allowed_types),
            max_files=self.max_files if self.max_files is not None else settings.max_files,
            max_fields=settings.max_fields,
            form_size=form_size,
            folder=self.folder,
        )


@dataclass(frozen=True, slots=True)
class ResolvedLimits:
    max_size: int  # file content of one request, all files together
    allowed_types: tuple[str, ...]
    max_files: int
    max_fields: int
    form_size: int  # text fields and multipart framing (server.client_max_size)
    folder: str

    @property
    def max_body(self) -> int:
        return self.max_size + self.form_size


# The limits of the upload route a request is for, set by @accepts_uploads for the reader.
UPLOAD_LIMITS: web.RequestKey[ResolvedLimits] = web.RequestKey(
    "aiosite.upload_limits", ResolvedLimits
)


def resolved_limits(request: web.Request, limits: UploadLimits) -> ResolvedLimits:
    settings = settings_of(request)
    return limits.resolve(settings.section(UploadSettings), settings.server.client_max_size)


def body_too_large(limits: ResolvedLimits) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limits.max_body,
        text=(
            f"The upload is too large: this form accepts files of at most "
            f"{describe_size(limits.max_size)} in all."
        ),
    )


def describe_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def accepts_uploads(
    *,
    max_size: int | None = None,
    allowed_types: Sequence[str] | None = None,
    max_files: int | None = None,
    folder: str = "uploads",
) -> Callable[[H], H]:
    """Make a handler an upload route, read with ``read_upload_form(request)``.

    ``max_size`` (bytes of file content per request), ``allowed_types`` (``"image/png"``,
    ``"image/*"``) and ``max_files`` override the ``uploads`` settings for this route;
    files are stored under ``<folder>/<yyyy>/<mm>/<dd>/``. Put it below the route
    decorator (on a ``web.View``, decorate the method). The handler is marked as one
    that streams its body, so that nothing (the CSRF check) reads the body before it.
    """
    if max_size is not None and max_size <= 0:
        raise ValueError("accepts_uploads: max_size must be a positive number of bytes")
    if max_files is not None and max_files <= 0:
        raise ValueError("accepts_uploads: max_files must be positive")
    types = None
    if allowed_types is not None:
        if isinstance(allowed_types, str):
            raise TypeError("accepts_uploads: allowed_types is a list, e.g. ['image/png']")
        if not allowed_types:
            raise ValueError(
                "accepts_uploads: allowed_types must name content types, e.g. ['image/png']"
            )
        try:
            types = tuple(check_media_types(list(allowed_types)))
        except ValueError as exc:
            raise ValueError(f"accepts_uploads: {exc}") from None
    limits = UploadLimits(max_size, types, max_files, check_folder(folder))

    def decorator(handler: H) -> H:
        @functools.wraps(handler)
        async def upload_route(*args: Any, **kwargs: Any) -> web.StreamResponse:
            request = request_of(args, decorator="@accepts_uploads", handler=handler)
            resolved = resolved_limits(request, limits)
            declared = request.content_length
            if declared is not None and declared > resolved.max_body:
                raise body_too_large(resolved)
            request[UPLOAD_LIMITS] = resolved
            response: web.StreamResponse = await handler(*args, **kwargs)
            return response

        setattr(upload_route, STREAMS_BODY, True)
        return upload_route  # type: ignore[return-value]

    return decorator
