"""Add an app to ``apps:`` in a settings file by editing lines, so comments survive.

A YAML round trip through PyYAML would drop every comment of a file that is mostly
comments; instead the new entry is written in the style the list already has (block or
flow), and the result is parsed again to prove the edit did what was meant.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from aiosite.exceptions import CommandError
from aiosite.settings import yaml_error

_APPS_LINE = re.compile(r"^apps[ \t]*:(?P<rest>[^\r\n]*)", re.MULTILINE)
_ITEM = re.compile(r"^(?P<lead>[ \t]*-[ \t]+)\S")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def add_app(text: str, dotted: str, *, label: str = "config/default.yaml") -> str:
    """Return ``text`` with ``dotted`` appended to its top-level ``apps:`` list."""
    current = _apps(text, label)
    if dotted in current:
        raise CommandError(f"{label}: {dotted!r} is already listed in apps:")
    updated = _insert(text, dotted)
    if _apps(updated, label) != [*current, dotted]:
        raise CommandError(
            f"{label}: could not add {dotted!r} to apps: automatically; add the line "
            f"'  - {dotted}' under apps: by hand"
        )
    return updated


def _apps(text: str, label: str) -> list[str]:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandError(yaml_error(label, exc) + " (fix it first)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CommandError(f"{label}: expected a mapping of settings at the top level")
    apps = data.get("apps")
    if apps is None:
        return []
    if not isinstance(apps, list) or not all(isinstance(item, str) for item in apps):
        raise CommandError(f"{label}: apps: must be a list of package names")
    return apps


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _split_comment(rest: str) -> tuple[str, str]:
    """``' [a, b]  # c'`` -> ``('[a, b]', '  # c')``; good enough for package names."""
    match = re.search(r"(^|\s)#", rest)
    if match is None:
        return rest.strip(), ""
    start = match.start() if not match.group(1) else match.start() + 1
    return rest[:start].strip(), "  " + rest[start:].strip()


def _insert(text: str, dotted: str) -> str:
    nl = _newline(text)
    match = _APPS_LINE.search(text)
    if match is None:
        if text.strip():
            text = text.rstrip("\r\n") + nl + nl
        return f"{text}apps:{nl}  - {dotted}{nl}"
    value, comment = _split_comment(match.group("rest"))
    if value.startswith("["):
        return _insert_flow(text, match.start("rest") + match.group("rest").index("["), dotted)
    if value in _NULLS:
        return _insert_block(text, match, comment, dotted, nl)
    # A scalar, an alias or something else we do not rewrite; the caller reports it.
    return text


def _insert_block(text: str, match: re.Match[str], comment: str, dotted: str, nl: str) -> str:
    head, tail = text[: match.end()], text[match.end() :]
    lines = tail.splitlines(keepends=True)
    # lines[0] is the rest of the `apps:` line (its line break), the items follow.
    last = 0
    lead: str | None = None
    item_indent = 0
    for index, line in enumerate(lines[1:], start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" \t"))
        item = _ITEM.match(line)
        if item is not None and (lead is None or indent == item_indent):
            if lead is None:
                lead, item_indent = item.group("lead"), indent
            last = index
        elif lead is not None and indent > item_indent:
            last = index  # a continuation of the previous item
        else:
            break
    if lead is None:
        # `apps:` (or `apps: ~`) with no items yet: start the block.
        head = text[: match.start()] + "apps:" + comment
        return head + nl + f"  - {dotted}" + (tail if tail.startswith(("\n", "\r")) else nl + tail)
    before = "".join(lines[: last + 1])
    if not before.endswith(("\n", "\r")):
        before += nl
    return head + before + f"{lead}{dotted}{nl}" + "".join(lines[last + 1 :])


def _insert_flow(text: str, open_pos: int, dotted: str) -> str:
    close_pos, last_sig = _scan_flow(text, open_pos)
    if close_pos is None:
        return text
    if "\n" not in text[open_pos:close_pos]:
        sig = text[last_sig]
        addition = dotted if sig == "[" else f" {dotted}" if sig == "," else f", {dotted}"
        return text[: last_sig + 1] + addition + text[last_sig + 1 :]
    # A list over several lines: one entry a line, in the indentation the others use.
    nl = _newline(text)
    line_start = text.rfind("\n", 0, last_sig) + 1
    line_end = text.find("\n", last_sig)
    line_end = close_pos if line_end == -1 or line_end > close_pos else line_end
    if line_end > 0 and text[line_end - 1] == "\r":
        line_end -= 1
    line = text[line_start:line_end]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    sig = text[last_sig]
    if sig == "[":
        return text[: last_sig + 1] + f"{nl}  {dotted}," + text[last_sig + 1 :]
    if sig == ",":
        return text[:line_end] + f"{nl}{indent}{dotted}," + text[line_end:]
    with_comma = text[: last_sig + 1] + "," + text[last_sig + 1 : line_end]
    return with_comma + f"{nl}{indent}{dotted}" + text[line_end:]


def _scan_flow(text: str, open_pos: int) -> tuple[int | None, int]:
    """Find the ``]`` closing the ``[`` at ``open_pos`` and the last significant
    character before it, skipping quoted strings and comments."""
    depth = 0
    last_sig = open_pos
    quote = ""
    in_comment = False
    pos = open_pos
    while pos < len(text):
        char = text[pos]
        if in_comment:
            in_comment = char != "\n"
        elif quote:
            if char == "\\" and quote == '"':
                pos += 1
            elif char == quote:
                quote = ""
            last_sig = pos
        elif char == "#" and text[pos - 1] in " \t\n":
            in_comment = True
        elif char in "'\"":
            quote = char
            last_sig = pos
        elif char == "]" and depth == 1:
            return pos, last_sig
        elif not char.isspace():
            depth += {"[": 1, "]": -1}.get(char, 0)
            last_sig = pos
        pos += 1
    return None, last_sig
