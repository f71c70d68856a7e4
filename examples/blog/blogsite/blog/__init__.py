"""The blog app: posts, comments, tags and attachments, mounted at /blog/."""

from aiosite import App

from .text import file_size, format_date, paragraphs

app = App(
    "blog",
    prefix="/blog",
    template_filters={"paragraphs": paragraphs, "date": format_date, "file_size": file_size},
)
