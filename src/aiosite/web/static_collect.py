"""Collecting static files for production (``aiosite collectstatic``).

Every file of the static folders (the project's first, then each app's: the first that
has a path wins, as when serving) is copied into ``static.root`` twice: under its plain
name and under a content-hashed name, which never changes meaning and so may be cached
for ever. Stylesheets are hashed after their references are rewritten to the hashed
names, so a changed image changes the name of every stylesheet that uses it: files
other than stylesheets go first, then stylesheets in the order of their references to
each other. A file already in place with the same content is not written again.
"""

from __future__ import annotations

import graphlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiosite.web.static_css import Reference, references, rewrite
from aiosite.web.static_manifest import (
    MANIFEST_NAME,
    ensure_mode,
    file_mode,
    hashed_name,
    manifest_bytes,
    write_atomically,
)

CSS_SUFFIX = ".css"


@dataclass(slots=True)
class Collected:
    """What a collection did."""

    files: int = 0
    unchanged: int = 0
    manifest: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def static_sources(roots: Sequence[Path]) -> dict[str, Path]:
    """Every file the static ``roots`` serve, by static path (first root wins), in path
    order. Hidden files and folders, names the static route refuses, and symlinks that
    lead out of their root are left out, as when serving."""
    found: dict[str, Path] = {}
    for root in roots:
        root = root.resolve()
        for relative, path in _walk(root):
            found.setdefault(relative, path)
    return dict(sorted(found.items()))


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder).resolve()
        # A symlinked folder may lead out of the root, or back up into it (a loop).
        if not here.is_relative_to(root) or here in seen:
            dirs[:] = []
            continue
        seen.add(here)
        dirs[:] = sorted(d for d in dirs if _servable(d))
        prefix = Path(folder).relative_to(root).as_posix()
        for name in sorted(files):
            if not _servable(name):
                continue
            path = Path(folder, name)
            resolved = path.resolve()
            if resolved.is_relative_to(root) and resolved.is_file():
                yield (name if prefix == "." else f"{prefix}/{name}"), resolved


def _servable(name: str) -> bool:
    return not name.startswith(".") and not any(c in name for c in ("\\", "\0", ":"))


def collect(
    files: Mapping[str, Path],
    target: Path,
    *,
    shown: Callable[[Path], str] = str,
    on_file: Callable[[str], None] | None = None,
) -> Collected:
    """Copy ``files`` (static path -> source file, as ``static_sources`` finds them) into
    ``target`` under their plain and hashed names and write the manifest there. ``shown``
    names a source file in warnings; ``on_file`` is called once per file (a progress bar)."""
    sources = dict(files)
    result = Collected(files=len(sources))
    mode = file_mode()
    if MANIFEST_NAME in sources:
        result.warnings.append(
            f"{shown(sources.pop(MANIFEST_NAME))}: skipped, {MANIFEST_NAME} at the top of "
            "static.root is the manifest; rename the file"
        )
        result.files -= 1
    digests: dict[str, str] = {}
    stylesheets = [path for path in sources if path.endswith(CSS_SUFFIX)]
    for relative, source in sources.items():
        if relative.endswith(CSS_SUFFIX):
            continue
        digest = _file_digest(source)
        digests[relative] = digest
        result.unchanged += _place(source, target, relative, digest, source, digest, mode)
        if on_file is not None:
            on_file(relative)
    parsed = {path: _read_css(path, sources[path]) for path in stylesheets}
    for relative in _stylesheet_order(parsed, sources, shown, result.warnings):
        source = sources[relative]
        raw, text, refs = parsed[relative]
        for ref in refs:
            if ref.target not in sources:
                result.warnings.append(
                    f"{shown(source)}:{ref.line}: {ref.written} names no static file "
                    f"({ref.target}); left as written"
                )

        def digest_of(ref: Reference) -> str | None:
            # A stylesheet not hashed yet closes a cycle: its plain name stays.
            return digests.get(ref.target)

        content = rewrite(text, refs, digest_of).encode("utf-8", "surrogateescape")
        digest = hashlib.sha256(content).hexdigest()
        digests[relative] = digest
        result.unchanged += _place(
            source, target, relative, _bytes_digest(raw), content, digest, mode
        )
        if on_file is not None:
            on_file(relative)
    result.manifest = {path: hashed_name(path, digests[path]) for path in sources}
    manifest = manifest_bytes(result.manifest)
    manifest_path = target / MANIFEST_NAME
    if _same(manifest_path, len(manifest), hashlib.sha256(manifest).hexdigest()):
        ensure_mode(manifest_path, mode)
    else:
        write_atomically(manifest_path, manifest, mode)
    return result


def _stylesheet_order(
    parsed: dict[str, tuple[bytes, str, list[Reference]]],
    sources: dict[str, Path],
    shown: Callable[[Path], str],
    warnings: list[str],
) -> list[str]:
    """The stylesheets, each after those it references; a cycle is reported and broken
    (the reference that closes it keeps its plain name)."""
    graph = {
        path: {ref.target for ref in refs if ref.target in parsed}
        for path, (_, _, refs) in parsed.items()
    }
    while True:
        try:
            return list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            # graphlib lists each node before those that reference it: reversed, each
            # stylesheet references the next.
            cycle: list[str] = list(reversed(exc.args[1]))
            warnings.append(
                f"{shown(sources[cycle[0]])}: stylesheets reference each other in a cycle "
                f"({' -> '.join(cycle)}); the reference from {cycle[0]} to {cycle[1]} "
                "keeps its plain name"
            )
            graph[cycle[0]].discard(cycle[1])


def _read_css(relative: str, path: Path) -> tuple[bytes, str, list[Reference]]:
    raw = path.read_bytes()
    # surrogateescape: a stylesheet in another encoding keeps its bytes as they are.
    text = raw.decode("utf-8", "surrogateescape")
    return raw, text, references(relative, text)


def _file_digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _bytes_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _place(
    source: Path,
    target: Path,
    relative: str,
    plain_digest: str,
    hashed_content: Path | bytes,
    hashed_digest: str,
    mode: int,
) -> int:
    """Write ``source`` as ``relative`` and ``hashed_content`` under the hashed name,
    each unless already there with the same content; 1 when neither was written."""
    plain = target / relative
    written = _write(plain, source, source.stat().st_size, plain_digest, source, mode)
    hashed = target / hashed_name(relative, hashed_digest)
    size = len(hashed_content) if isinstance(hashed_content, bytes) else source.stat().st_size
    written |= _write(hashed, hashed_content, size, hashed_digest, source, mode)
    return 0 if written else 1


def _write(
    path: Path, content: Path | bytes, size: int, digest: str, source: Path, mode: int
) -> bool:
    if _same(path, size, digest):
        # Unchanged, but maybe written 0600 by an earlier version: the web server reads it.
        ensure_mode(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        write_atomically(path, content, mode)
    else:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            shutil.copyfile(content, temporary)
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    # The source's modification time: the same file collected on two hosts gets the same
    # Last-Modified (and ETag, which aiohttp derives from mtime and size).
    stat = source.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return True


def _same(path: Path, size: int, digest: str) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        return _file_digest(path) == digest
    except OSError:
        return False
