"""The static manifest: ``staticfiles.json`` in ``static.root``, mapping each plain
static path to its content-hashed name (``blog/site.css`` -> ``blog/site.3f2a9c1b7d4e.css``).

``aiosite collectstatic`` writes it; in production the static battery reads it once, when
the site is built, so that ``static()`` costs one dict lookup per call.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aiosite.exceptions import ImproperlyConfigured

MANIFEST_NAME = "staticfiles.json"
MANIFEST_VERSION = 1
# Hex digits of the SHA-256 a hashed name carries: 48 bits, plenty to tell versions apart.
HASH_LENGTH = 12


def hashed_name(path: str, digest: str) -> str:
    """``path`` with the first 12 hex digits of ``digest`` before its extension:
    ``blog/site.css`` -> ``blog/site.<hash>.css``; ``LICENSE`` -> ``LICENSE.<hash>``."""
    head, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    hashed = f"{stem}.{digest[:HASH_LENGTH]}{ext}"
    return posixpath.join(head, hashed) if head else hashed


def manifest_bytes(paths: Mapping[str, str]) -> bytes:
    """The manifest's content: sorted, so that an unchanged site writes the same bytes."""
    document = {"version": MANIFEST_VERSION, "paths": dict(sorted(paths.items()))}
    return (json.dumps(document, indent=2) + "\n").encode()


def file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask): what a collected file
    gets, so that the web server and the service user can read ``static.root``.

    Read from /proc where it can be: setting the umask to read it back is process-wide,
    and another thread creating a file meanwhile would get the wrong mode."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def ensure_mode(path: Path, mode: int) -> None:
    """Give ``path`` the permission bits ``mode`` unless it has them already (a file
    collected by an earlier version, written 0600). A file of another user's keeps the
    mode its owner gave it."""
    if path.stat().st_mode & 0o7777 != mode:
        with contextlib.suppress(PermissionError):
            os.chmod(path, mode)


def write_atomically(path: Path, content: bytes, mode: int | None = None) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename, so that a
    site reading it (or a browser fetching it) never sees half a file. The file gets
    ``mode`` (default: ``file_mode()``), not the 0600 of a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            os.fchmod(out.fileno(), file_mode() if mode is None else mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_manifest(path: Path, shown: str) -> dict[str, str]:
    """The plain -> hashed paths of the manifest at ``path`` (named ``shown`` in errors);
    ImproperlyConfigured when it is missing or not a manifest."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ImproperlyConfigured(
            f"static.manifest: on, but the manifest {shown} does not exist: run "
            "`aiosite collectstatic` before starting the site (or set static.manifest: false "
            "to serve the static folders as they are)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"static.manifest: the manifest {shown} cannot be read ({exc}): run "
            "`aiosite collectstatic` again"
        ) from None
    paths = document.get("paths") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict)
        or document.get("version") != MANIFEST_VERSION
        or not isinstance(paths, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in paths.items())
    ):
        raise ImproperlyConfigured(
            f"static.manifest: {shown} is not a version {MANIFEST_VERSION} static manifest: "
            "run `aiosite collectstatic` again"
        )
    return paths
