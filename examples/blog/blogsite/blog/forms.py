"""The blog's forms: what was typed (kept to re-display) and the errors per field.

A form holds the submitted text as it came; ``validate()`` returns the clean values, or
``None`` with ``errors`` filled in, one message per field, written for the person typing.
Who wrote a post or a comment is not a field: it is the logged-in user.

The post form comes with files (``multipart/form-data``): its text fields are read by
aiosite's upload reader (``read_upload_form``) along with the files, and handed here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from multidict import MultiMapping

from .models import SLUG_MAX, TAG_MAX, TITLE_MAX, Post
from .text import SLUG_RE, slugify

# Paths of the blog's own pages, which a post at /blog/<slug> would hide.
RESERVED_SLUGS = frozenset({"new"})
TAGS_MAX = 8
COMMENT_MAX = 5000
_SPACES = re.compile(r"\s+")

DUPLICATE_SLUG = "A post with this slug already exists."


def _text(data: Mapping[str, object], name: str) -> str:
    # Browsers send textarea line breaks as CRLF; a file upload is not text.
    value = data.get(name, "")
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class PostData:
    title: str
    slug: str
    body: str
    published: bool
    tags: list[tuple[str, str]]  # (name, slug), in the order typed
    remove: frozenset[int]  # ids of attachments to delete


@dataclass
class PostForm:
    title: str = ""
    slug: str = ""
    body: str = ""
    published: bool = False
    tags: str = ""
    # The attachments ticked "Remove" on the edit form, by id.
    remove: frozenset[int] = frozenset()
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: MultiMapping[str]) -> PostForm:
        return cls(
            title=_text(data, "title"),
            slug=_text(data, "slug"),
            body=_text(data, "body"),
            # An unchecked checkbox is not sent at all.
            published="published" in data,
            tags=_text(data, "tags"),
            # Anything but an id is no attachment of the post; the view ignores it.
            remove=frozenset(int(v) for v in data.getall("remove", ()) if v.isdigit()),
        )

    @classmethod
    def from_post(cls, post: Post) -> PostForm:
        """The form filled in from ``post``, whose tags must be loaded."""
        return cls(
            title=post.title,
            slug=post.slug,
            body=post.body,
            published=post.published,
            tags=", ".join(tag.name for tag in post.tags),
        )

    def validate(self) -> PostData | None:
        errors: dict[str, str] = {}
        if not self.title:
            errors["title"] = "Enter a title."
        elif len(self.title) > TITLE_MAX:
            errors["title"] = f"Keep the title to {TITLE_MAX} characters; it has {len(self.title)}."
        # An empty slug is made from the title, but the field keeps what was typed, so a
        # title corrected after another error still gives its own slug.
        slug = self.slug or slugify(self.title, SLUG_MAX)
        if not slug:
            errors["slug"] = "Enter a slug, or a title with letters or digits to make one from."
        elif len(slug) > SLUG_MAX:
            errors["slug"] = f"Keep the slug to {SLUG_MAX} characters; it has {len(slug)}."
        elif not SLUG_RE.match(slug):
            errors["slug"] = (
                "Use lowercase letters, digits and single hyphens between them, e.g. my-first-post."
            )
        elif slug in RESERVED_SLUGS:
            errors["slug"] = f"“{slug}” is the address of another page; choose another slug."
        if not self.body:
            errors["body"] = "Write the post."
        tags, tag_error = parse_tags(self.tags)
        if tag_error:
            errors["tags"] = tag_error
        self.errors = errors
        if errors:
            return None
        return PostData(self.title, slug, self.body, self.published, tags, self.remove)


def parse_tags(text: str) -> tuple[list[tuple[str, str]], str | None]:
    """``"aiohttp, Async IO"`` -> ``[("aiohttp", "aiohttp"), ("Async IO", "async-io")]``.

    Names that give the same slug count once (the first spelling wins).
    """
    tags: dict[str, str] = {}
    for part in text.split(","):
        name = _SPACES.sub(" ", part).strip()
        if not name:
            continue
        if len(name) > TAG_MAX:
            return [], f"Keep each tag to {TAG_MAX} characters; “{name[:20]}…” is longer."
        slug = slugify(name, TAG_MAX)
        if not slug:
            return [], f"A tag needs a letter or digit; “{name}” has none."
        tags.setdefault(slug, name)
    if len(tags) > TAGS_MAX:
        return [], f"Use at most {TAGS_MAX} tags."
    return [(name, slug) for slug, name in tags.items()], None


@dataclass
class CommentForm:
    body: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> CommentForm:
        return cls(body=_text(data, "body"))

    def validate(self) -> bool:
        errors: dict[str, str] = {}
        if not self.body:
            errors["body"] = "Write a comment."
        elif len(self.body) > COMMENT_MAX:
            errors["body"] = (
                f"Keep the comment to {COMMENT_MAX} characters; it has {len(self.body)}."
            )
        self.errors = errors
        return not errors
