"""Where uploaded files live: a storage protocol and the file-system storage.

A storage name is a relative, '/'-separated path such as
``uploads/2026/05/21/photo.png``. Names come back from ``save`` (which never overwrites
a file: a taken name gets a random suffix) and are checked again on every use, so a
name taken from a URL cannot leave the storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from aiohttp import web

CHUNK_SIZE = 256 * 1024
# A clash with a random suffix again means something is very wrong.
_MAX_ATTEMPTS = 16


class InvalidName(ValueError):
    """A storage name that is empty, absolute, or could leave the storage."""


@runtime_checkable
class Storage(Protocol):
    """What aiosite.uploads needs of a place to keep files (a folder, a bucket)."""

    async def save(self, name: str, chunks: AsyncIterable[bytes]) -> str:
        """Store ``chunks`` as a new file named ``name``, or a variant of it when the name
        is taken; return the name used. When ``chunks`` raises, nothing is left behind
        and the exception propagates."""
        ...

    def open(self, name: str) -> AsyncIterator[bytes]:
        """The file's content in chunks; FileNotFoundError when there is none."""
        ...

    def path(self, name: str) -> Path | None:
        """The file on this machine's disk, for sendfile; None when the storage is not
        local or no such file exists."""
        ...

    async def size(self, name: str) -> int:
        """Size in bytes; FileNotFoundError when there is no such file."""
        ...

    async def exists(self, name: str) -> bool: ...

    async def delete(self, name: str) -> None:
        """Remove the file; a file that is already gone is no error."""
        ...


def name_parts(name: str) -> list[str]:
    """The segments of a storage name; InvalidName for anything that is not a plain
    relative path (``..``, absolute, drive letters, backslashes, NUL, hidden files)."""
    parts = name.split("/")
    for part in parts:
        if (
            not part
            or part.startswith(".")
            or "\\" in part
            or "\0" in part
            or ":" in part
            or any(ord(ch) < 32 for ch in part)
        ):
            raise InvalidName(f"not a storage name: {name!r}")
    return parts


class FileSystemStorage:
    """Files in a folder (``uploads.media_root``); every file operation runs in a thread,
    so a slow disk never blocks the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _locate(self, name: str) -> Path:
        return self.root.joinpath(*name_parts(name))

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root)

    # --- writing -------------------------------------------------------------

    def _create(self, name: str) -> tuple[BinaryIO, str]:
        parts = name_parts(name)
        folder = self.root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        if not self._inside(folder):  # a symlinked folder planted inside the root
            raise InvalidName(f"{name!r} leads out of the storage")
        filename = parts[-1]
        stem, dot, extension = filename.rpartition(".")
        if not dot:
            stem, extension = filename, ""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        flags |= getattr(os, "O_NOFOLLOW", 0)
        for _ in range(_MAX_ATTEMPTS):
            try:
                fd = os.open(folder / filename, flags, 0o644)
            except FileExistsError:
                # O_EXCL makes the check and the creation one step: two uploads of the
                # same name at the same moment both get a file of their own.
                filename = f"{stem}-{secrets.token_hex(4)}{dot}{extension}"
                continue
            return os.fdopen(fd, "wb"), "/".join([*parts[:-1], filename])
        raise FileExistsError(f"no free name for {name!r} after {_MAX_ATTEMPTS} attempts")

    async def save(self, name: str, chunks: AsyncIterable[bytes]) -> str:
        file, stored = await asyncio.to_thread(self._create, name)
        path = self._locate(stored)
        try:
            async for chunk in chunks:
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(file.close)
        except BaseException:
            # Synchronous on purpose: this also runs when the task is cancelled, when an
            # await could be cancelled again and leave the partial file behind.
            file.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        return stored

    async def delete(self, name: str) -> None:
        path = self._locate(name)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    # --- reading -------------------------------------------------------------

    def path(self, name: str) -> Path | None:
        try:
            path = self._locate(name)
            resolved = path.resolve(strict=True)
        except (InvalidName, OSError, RuntimeError):
            return None
        # A symlink may not lead out of the root.
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved

    async def exists(self, name: str) -> bool:
        return await asyncio.to_thread(self.path, name) is not None

    async def size(self, name: str) -> int:
        path = await asyncio.to_thread(self.path, name)
        if path is None:
            raise FileNotFoundError(name)
        return (await asyncio.to_thread(path.stat)).st_size

    async def open(self, name: str) -> AsyncIterator[bytes]:
        path = await asyncio.to_thread(self.path, name)
        if path is None:
            raise FileNotFoundError(name)
        file = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
                yield chunk
        finally:
            file.close()


# The site's upload storage; a project may replace it in its setup hook (e.g. with a bucket).
UPLOAD_STORAGE: web.AppKey[Storage] = web.AppKey("aiosite.upload_storage", Storage)
