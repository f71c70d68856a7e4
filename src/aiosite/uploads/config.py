"""The ``uploads:`` settings section and the rule for content types."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from aiosite.settings import Section, Settings


def check_media_types(values: list[str]) -> list[str]:
    """``values`` lower-cased and stripped; ValueError names the first that is not a
    content type (type/subtype, or type/* for a family; no parameters)."""
    checked = []
    for value in values:
        media_type = value.strip().lower()
        kind, sep, subtype = media_type.partition("/")
        if not sep or not kind or not subtype or kind == "*" or ";" in media_type:
            raise ValueError(
                f"{value!r} is not a content type; write type/subtype, e.g. "
                "image/png, or type/* for a family, e.g. image/*"
            )
        checked.append(media_type)
    return checked


class UploadSettings(Section):
    """File uploads stored under media_root (docs/uploads.md)."""

    # Relative to the project directory; never inside a static folder.
    media_root: Path = Path("var/media")
    # The largest upload a route accepts unless it sets its own (bytes).
    max_size: int = Field(default=10 * 1024**2, gt=0)
    # Content types accepted unless a route names its own; "image/*" for a family.
    allowed_types: list[str] = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "application/pdf",
            "text/plain",
        ]
    )
    # Files one request may upload, unless a route sets its own.
    max_files: int = Field(default=10, gt=0)
    # Text fields one upload form may carry (they are held in memory).
    max_fields: int = Field(default=100, gt=0)

    @field_validator("allowed_types")
    @classmethod
    def _media_types(cls, value: list[str]) -> list[str]:
        return check_media_types(value)


def media_root(settings: Settings) -> Path:
    """Where uploads are kept: ``uploads.media_root`` under the project directory."""
    return settings.project_dir / settings.section(UploadSettings).media_root
