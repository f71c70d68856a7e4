"""Reading an upload form: text fields into memory, files streamed into the storage.

The body is read part by part with ``request.multipart()``, every file in chunks
written by the storage as they arrive, so a large upload never sits in memory. Every
byte is counted against the route's limits as it is read; a request that breaks a
limit or sends a refused file is answered with a 4xx and leaves no file behind.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict

from aiosite.hooks import RequestFinalizer, add_request_finalizer
from aiosite.keys import CSRF_CHECK, CSRF_PENDING
from aiosite.uploads.content import (
    SNIFF_BYTES,
    content_problem,
    declared_type,
    extension_for,
    is_allowed,
    is_text,
)
from aiosite.uploads.limits import UPLOAD_LIMITS, ResolvedLimits, body_too_large, describe_size
from aiosite.uploads.names import dated_name, display_filename, storage_filename
from aiosite.uploads.storage import UPLOAD_STORAGE, Storage

CSRF_FIELD = "csrf_token"
_CHUNK = 64 * 1024
_MAX_TOKEN_LENGTH = 1024
_PLAIN_TRANSFER_ENCODINGS = frozenset({"binary", "7bit", "8bit"})
_CSRF_FIELD_FIRST = (
    "The request was refused because its CSRF token is missing: in an upload form the "
    "csrf_token field must come first, before any file. (Developers: put "
    "{{ csrf_input() }} right after the <form> tag.)"
)


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file stored by ``read_upload_form``."""

    field: str  # the form field it came in
    name: str  # its storage name: keep it (in a model), serve it with file_response
    filename: str  # the client's name, cleaned, for showing and downloads; never a path
    content_type: str  # the checked type, which its stored extension matches
    size: int


@dataclass(slots=True)
class UploadForm:
    """What an upload form sent: its text fields and the files stored from it."""

    storage: Storage = field(kw_only=True, repr=False)  # where its files were stored
    fields: MultiDict[str] = field(default_factory=MultiDict)
    files: MultiDict[UploadedFile] = field(default_factory=MultiDict)

    async def discard(self) -> None:
        """Delete the stored files, e.g. when the view finds the rest of the form invalid."""
        for uploaded in self.files.values():
            await self.storage.delete(uploaded.name)
        self.files = MultiDict()


def _refused(filename: str, reason: str, allowed: tuple[str, ...]) -> web.HTTPException:
    return web.HTTPUnsupportedMediaType(
        text=f"{filename!r} was refused: {reason}. Accepted types: {', '.join(allowed)}."
    )


class _FormReader:
    """One request's reading, with its counters and the files stored so far."""

    def __init__(self, request: web.Request, limits: ResolvedLimits, storage: Storage) -> None:
        self.request = request
        self.limits = limits
        self.form = UploadForm(storage=storage)
        self.file_bytes = 0
        self.form_bytes = 0
        self.parts = 0

    # --- counting ----------------------------------------------------------------

    def _check_body(self) -> None:
        # Everything received so far, multipart framing and part headers included: the
        # bound holds whatever the Content-Length said, or without one (chunked).
        if self.request.content.total_bytes > self.limits.max_body:
            raise body_too_large(self.limits)

    async def _file_chunk(self, part: BodyPartReader, size: int = _CHUNK) -> bytes:
        chunk = await part.read_chunk(size)
        self.file_bytes += len(chunk)
        if self.file_bytes > self.limits.max_size:
            raise body_too_large(self.limits)
        self._check_body()
        return chunk

    async def _field_bytes(self, part: BodyPartReader, limit: int) -> bytes:
        data = bytearray()
        while chunk := await part.read_chunk(8192):
            data += chunk
            self.form_bytes += len(chunk)
            if self.form_bytes > self.limits.form_size or len(data) > limit:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self.limits.form_size,
                    text=(
                        f"The form's text fields are too large: at most "
                        f"{describe_size(self.limits.form_size)} in all."
                    ),
                )
            self._check_body()
        return bytes(data)

    # --- parts ----------------------------------------------------------------

    async def read(self, reader: MultipartReader) -> UploadForm:
        csrf_pending = bool(self.request.get(CSRF_PENDING))
        while True:
            part = await reader.next()
            self._check_body()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text="Nested multipart bodies are not accepted.")
            self.parts += 1
            if self.parts > self.limits.max_fields + self.limits.max_files:
                raise web.HTTPBadRequest(text="The form has too many fields.")
            encoding = part.headers.get(hdrs.CONTENT_TRANSFER_ENCODING, "binary").lower()
            if encoding not in _PLAIN_TRANSFER_ENCODINGS:
                raise web.HTTPBadRequest(
                    text=f"Content-Transfer-Encoding {encoding!r} is not accepted (RFC 7578)."
                )
            name = part.name
            if not name:
                raise web.HTTPBadRequest(text="A part of the form has no field name.")
            if csrf_pending:
                await self._check_csrf(part, name)
                csrf_pending = False
            elif part.filename is None:
                await self._field(part, name)
            elif part.filename == "":
                # A file input left empty: browsers send a nameless, empty part.
                while await self._file_chunk(part):
                    pass
            else:
                await self._file(part, name, part.filename)
        if csrf_pending:  # an empty body: no token, and the handler must not go on
            raise web.HTTPForbidden(text=_CSRF_FIELD_FIRST)
        return self.form

    async def _check_csrf(self, part: BodyPartReader, name: str) -> None:
        # The token must come before anything is stored, so it must be the first part;
        # csrf_input() at the top of the form puts it there.
        if name != CSRF_FIELD or part.filename is not None:
            raise web.HTTPForbidden(text=_CSRF_FIELD_FIRST)
        token = (await self._field_bytes(part, _MAX_TOKEN_LENGTH)).decode("ascii", "replace")
        check = self.request.config_dict.get(CSRF_CHECK)
        if check is None:
            raise web.HTTPForbidden(text="CSRF token cannot be checked on this site.")
        await check(self.request, token)
        self.request[CSRF_PENDING] = False

    async def _field(self, part: BodyPartReader, name: str) -> None:
        if len(self.form.fields) >= self.limits.max_fields:
            raise web.HTTPBadRequest(
                text=f"The form has too many fields: at most {self.limits.max_fields}."
            )
        data = await self._field_bytes(part, self.limits.form_size)
        try:
            value = data.decode(part.get_charset("utf-8"))
        except (UnicodeDecodeError, LookupError):
            raise web.HTTPBadRequest(text=f"The field {name!r} is not UTF-8 text.") from None
        if name != CSRF_FIELD:
            self.form.fields.add(name, value)

    async def _file(self, part: BodyPartReader, name: str, raw_filename: str) -> None:
        limits = self.limits
        if len(self.form.files) >= limits.max_files:
            raise web.HTTPBadRequest(
                text=f"Too many files: this form accepts at most {limits.max_files}."
            )
        filename = display_filename(raw_filename)
        content_type = declared_type(part.headers.get(hdrs.CONTENT_TYPE))
        if not is_allowed(content_type, limits.allowed_types):
            raise _refused(filename, f"{content_type} is not accepted", limits.allowed_types)
        head = b""
        while len(head) < SNIFF_BYTES and (chunk := await self._file_chunk(part)):
            head += chunk
        problem = content_problem(content_type, head[:SNIFF_BYTES])
        if problem is not None:
            raise _refused(filename, f"declared as {content_type}, {problem}", limits.allowed_types)
        size = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal size
            decoder = codecs.getincrementaldecoder("utf-8")() if is_text(content_type) else None
            chunk = head
            while chunk:
                if decoder is not None:
                    self._decode(decoder, chunk, filename)
                size += len(chunk)
                yield chunk
                chunk = await self._file_chunk(part)
            if decoder is not None:
                self._decode(decoder, b"", filename, final=True)

        wanted = dated_name(
            limits.folder, storage_filename(raw_filename, extension_for(content_type))
        )
        stored = await self.form.storage.save(wanted, chunks())
        self.form.files.add(name, UploadedFile(name, stored, filename, content_type, size))

    def _decode(
        self, decoder: codecs.IncrementalDecoder, chunk: bytes, filename: str, final: bool = False
    ) -> None:
        try:
            decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            raise _refused(filename, "it is not UTF-8 text", self.limits.allowed_types) from None


async def read_upload_form(request: web.Request) -> UploadForm:
    """Read the upload form of a route decorated with ``@accepts_uploads``.

    Text fields land in ``form.fields``; each file is checked (allowed type, content
    that matches it, size) and streamed into the site's storage, landing in
    ``form.files`` as an ``UploadedFile``. A refused file, a limit broken or a
    malformed body raise the 4xx to answer, after deleting every file this request
    stored; so does a handler that fails later (its files would be orphans).
    """
    limits = request.get(UPLOAD_LIMITS)
    if limits is None:
        raise RuntimeError(
            "read_upload_form() needs its route decorated with @accepts_uploads(...), "
            "placed below the route decorator"
        )
    if request.content_type != "multipart/form-data":
        raise web.HTTPUnsupportedMediaType(
            text='An upload form must be sent as multipart/form-data (enctype="multipart/'
            'form-data" on the <form>).'
        )
    reader = _FormReader(request, limits, request.config_dict[UPLOAD_STORAGE])
    try:
        form = await reader.read(await request.multipart())
    except BaseException as exc:
        # Shielded: a cancelled request still deletes what it stored.
        await asyncio.shield(reader.form.discard())
        if isinstance(exc, ValueError | LookupError | HttpProcessingError):
            raise web.HTTPBadRequest(
                text="The upload could not be read: the multipart body is malformed."
            ) from None
        raise
    if form.files:
        add_request_finalizer(request, _discard_on_error(form))
    return form


def _discard_on_error(form: UploadForm) -> RequestFinalizer:
    async def finalizer(exc: BaseException | None) -> None:
        if exc is None or (isinstance(exc, web.HTTPException) and exc.status < 400):
            return
        await asyncio.shield(form.discard())

    return finalizer
