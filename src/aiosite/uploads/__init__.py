"""File uploads: streamed to a storage, checked, and served back safely (docs/uploads.md).

A route takes uploads with ``@accepts_uploads(...)`` and ``await read_upload_form(request)``;
``file_response(request, name)`` serves a stored file. The battery puts a
``FileSystemStorage`` on ``uploads.media_root`` under ``UPLOAD_STORAGE`` and refuses a
media root from which uploads would be served as site assets or templates.
"""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.exceptions import ImproperlyConfigured
from aiosite.settings import Settings, project_relative
from aiosite.uploads.config import UploadSettings, check_media_types, media_root
from aiosite.uploads.limits import accepts_uploads
from aiosite.uploads.reader import UploadedFile, UploadForm, read_upload_form
from aiosite.uploads.serving import file_response
from aiosite.uploads.storage import UPLOAD_STORAGE, FileSystemStorage, Storage


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    root = media_root(settings).resolve()
    problem = media_root_problem(root, settings, registry)
    if problem is not None:
        raise ImproperlyConfigured(f"uploads.media_root: {problem}")
    app[UPLOAD_STORAGE] = FileSystemStorage(root)


battery = Battery("aiosite.uploads", _attach, {"uploads": UploadSettings})
setup = battery.setup


def media_root_problem(media_root: Path, settings: Settings, registry: AppRegistry) -> str | None:
    """Why uploads must not be kept in ``media_root``, or None.

    Files in a static folder are served as the site's own assets (an uploaded HTML or
    script file would run with the site's origin), files in a templates folder are
    rendered as templates, and a media root that holds code or settings would let a
    stored name reach them.
    """
    project_dir = settings.project_dir.resolve()
    shown = functools.partial(project_relative, project_dir=project_dir)

    packages: list[Path] = []
    if registry.project.path is not None:
        packages.append(registry.project.path.resolve())
    packages.extend(loaded.path.resolve() for loaded in registry)
    for package in packages:
        for kind, exposed in (
            ("static", "served to anyone as the site's own static file"),
            ("templates", "rendered as a template"),
        ):
            folder = package / kind
            if media_root.is_relative_to(folder):
                return (
                    f"{shown(media_root)} is inside the {kind} folder {shown(folder)}, so an "
                    f"uploaded file could be {exposed}; keep uploads outside every static "
                    "and templates folder, e.g. var/media (the default)"
                )
    for package in packages:
        if media_root.is_relative_to(package):
            return (
                f"{shown(media_root)} is inside the package {shown(package)}, next to its "
                "code; keep uploads out of the code, e.g. in var/media (the default)"
            )
    for holder in [project_dir, *packages]:
        if holder.is_relative_to(media_root):
            return (
                f"{media_root} contains {holder}, whose code and settings a stored name "
                "could then reach; use a folder of its own, e.g. var/media (the default)"
            )
    return None


__all__ = [
    "UPLOAD_STORAGE",
    "FileSystemStorage",
    "Storage",
    "UploadForm",
    "UploadSettings",
    "UploadedFile",
    "accepts_uploads",
    "check_media_types",
    "file_response",
    "media_root",
    "read_upload_form",
    "setup",
]
