"""Files attached to posts: what the post form accepts, and the view that serves them.

Uploads go through aiosite.uploads: ``@accepts_uploads`` on the form's POST streams each
file to the upload storage (``uploads.media_root``, var/media) as it arrives, checks its
type against the site's ``uploads.allowed_types`` and against its own first bytes, and
its size against ``ATTACHMENTS_MAX_SIZE``; what is refused never reaches the view. The
files are served by ``attachment`` below, never as static files, so that a draft's files
stay private.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.orm import selectinload

from aiosite import db_session, get_or_404
from aiosite.uploads import UPLOAD_STORAGE, UploadForm, accepts_uploads, file_response

from .access import check_can_see
from .models import Attachment

# The input's name in the post form (<input type="file" name="attachments" multiple>).
FIELD = "attachments"
# Per saving of the form, all files together; a larger upload is answered 413.
ATTACHMENTS_MAX_SIZE = 5 * 1024 * 1024
MAX_ATTACHMENTS = 5

# The post form's POST handlers take files with these limits, and the types of the
# site's uploads.allowed_types (config/default.yaml); files are stored under
# blog/<yyyy>/<mm>/<dd>/ in the upload storage.
accepts_attachments = accepts_uploads(
    max_size=ATTACHMENTS_MAX_SIZE,
    max_files=MAX_ATTACHMENTS,
    folder="blog",
)


def attachments_of(upload: UploadForm) -> list[Attachment]:
    """New rows for the files the form brought (stored already; the rows say whose)."""
    return [
        Attachment(
            stored_name=uploaded.name,
            filename=uploaded.filename,
            content_type=uploaded.content_type,
            size=uploaded.size,
        )
        for uploaded in upload.files.getall(FIELD, [])
    ]


async def delete_files(request: web.Request, removed: list[Attachment]) -> None:
    """Delete the stored files of attachments whose rows are gone."""
    storage = request.config_dict[UPLOAD_STORAGE]
    for attachment in removed:
        await storage.delete(attachment.stored_name)


async def attachment(request: web.Request) -> web.StreamResponse:
    """``GET /blog/attachments/<id>``: the file, inline for images (the post page shows
    them with <img>), as a download under its original name otherwise."""
    found = await get_or_404(
        db_session(request),
        Attachment,
        request.match_info["id"],
        options=[selectinload(Attachment.post)],
    )
    await check_can_see(request, found.post)
    return await file_response(
        request, found.stored_name, filename=found.filename, inline=found.is_image
    )
