"""The blog app: posts, comments and tags, mounted at /blog/."""

from aiosite import App

from .text import format_date, paragraphs

app = App(
    "blog",
    prefix="/blog",
    template_filters={"paragraphs": paragraphs, "date": format_date},
)
