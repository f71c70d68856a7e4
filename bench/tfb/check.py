"""Correctness checker: TechEmpower's rules for the six tests, verified over HTTP.

    python -m tfb.check [--python bench/.venv/bin/python] [NAME ...]

starts each implementation (all by default), checks it and prints one line per
(implementation, test); exits 1 on any failure. ``check_implementation`` is the same
check against a server already running. It needs only aiohttp and asyncpg, so it runs in
either virtualenv. The expected fortunes come from the database, and the added one is
spelt out here rather than imported, so that a typo in shared code cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from typing import Any

import aiohttp
import asyncpg

from tfb import servers

ADDED_FORTUNE = "Additional fortune added at request time."
JAPANESE_FORTUNE = "フレームワークのベンチマーク"
# (raw ?queries= value or None for no parameter, the count TechEmpower expects)
QUERY_CASES: tuple[tuple[str | None, int], ...] = (
    ("20", 20),
    (None, 1),
    ("", 1),
    ("foo", 1),
    ("0", 1),
    ("-3", 1),
    ("501", 500),
)
BODY_EXCERPT = 200


@dataclass(frozen=True)
class Failure:
    test: str
    reason: str

    def __str__(self) -> str:
        return f"{self.test}: {self.reason}"


class CheckFailed(Exception):
    """One rule broken; the message says which and with what."""


@dataclass(frozen=True)
class Response:
    path: str
    status: int
    content_type: str
    body: bytes

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckFailed(f"GET {self.path}: body is not valid UTF-8 ({exc})") from None

    def json(self) -> Any:
        try:
            return json.loads(self.text())
        except ValueError as exc:
            raise CheckFailed(
                f"GET {self.path}: body is not JSON ({exc}): {self.excerpt()}"
            ) from None

    def excerpt(self) -> str:
        return repr(self.body[:BODY_EXCERPT].decode("utf-8", "replace"))


class Checker:
    """The checks of one implementation: one method per test, each raising CheckFailed."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, db: asyncpg.Connection):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.conn = db

    async def get(self, path: str) -> Response:
        async with self.session.get(self.base_url + path) as resp:
            body = await resp.read()
            response = Response(path, resp.status, resp.headers.get("Content-Type", ""), body)
            if not 200 <= resp.status < 300:
                raise CheckFailed(f"GET {path}: HTTP {resp.status}: {response.excerpt()}")
            for header in ("Server", "Date"):
                if not resp.headers.get(header):
                    raise CheckFailed(f"GET {path}: no {header} header")
            return response

    # --- the six tests -----------------------------------------------------------

    async def plaintext(self) -> None:
        resp = await self.get("/plaintext")
        expect_media_type(resp, "text/plain")
        if resp.body != b"Hello, World!":
            raise CheckFailed(f"GET /plaintext: body {resp.excerpt()}, not 'Hello, World!'")

    async def json(self) -> None:
        resp = await self.get("/json")
        expect_media_type(resp, "application/json")
        data = resp.json()
        if data != {"message": "Hello, World!"}:
            raise CheckFailed(f'GET /json: {data!r}, not {{"message": "Hello, World!"}}')

    async def db(self) -> None:
        ids = set()
        for _ in range(10):
            resp = await self.get("/db")
            expect_media_type(resp, "application/json")
            data = resp.json()
            if not isinstance(data, dict):
                raise CheckFailed(f"GET /db: a JSON {type(data).__name__}, not an object")
            world = parse_world(data, "GET /db")
            await self.expect_rows("GET /db", [world])
            ids.add(world[0])
        if len(ids) == 1:
            raise CheckFailed(f"GET /db: 10 requests all gave id {ids.pop()}: not random")

    async def queries(self) -> None:
        for raw, count in QUERY_CASES:
            path = "/queries" + ("" if raw is None else f"?queries={raw}")
            worlds = await self.worlds(path, count)
            await self.expect_rows(f"GET {path}", worlds)

    async def fortunes(self) -> None:
        resp = await self.get("/fortunes")
        expect_html_utf8(resp)
        text = resp.text()
        if "<script>" in text:
            raise CheckFailed("GET /fortunes: literal <script> in the body: messages not escaped")
        if "&lt;script&gt;" not in text:
            raise CheckFailed("GET /fortunes: no &lt;script&gt; in the body: fortune 11 missing")
        if JAPANESE_FORTUNE not in text:
            raise CheckFailed(
                f"GET /fortunes: the Japanese fortune {JAPANESE_FORTUNE!r} is not in the body "
                "(missing or wrongly encoded)"
            )
        stored = [(r["id"], r["message"]) for r in await self.conn.fetch("SELECT * FROM fortune")]
        expected = sorted([*stored, (0, ADDED_FORTUNE)], key=lambda row: row[1])
        page = FortunesPage.parse(text)
        compare_fortunes(page.rows, expected)
        compare_tokens(page.tokens, FortunesPage.parse(fortunes_document(expected)).tokens)

    async def updates(self) -> None:
        changed = total = 0
        for raw, count in QUERY_CASES:
            path = "/updates" + ("" if raw is None else f"?queries={raw}")
            before = dict(await self.conn.fetch("SELECT id, randomnumber FROM world"))
            worlds = await self.worlds(path, count)
            await self.expect_persisted(f"GET {path}", worlds)
            changed += sum(before[i] != n for i, n in worlds)
            total += len(worlds)
        # A new random number equals the old one once in 10,000: most rows must change.
        if changed < total / 2:
            raise CheckFailed(
                f"GET /updates: only {changed} of {total} returned rows differ from the "
                "database's values before the request: randomNumber is not being changed"
            )

    # --- shared parts ------------------------------------------------------------

    async def worlds(self, path: str, count: int) -> list[tuple[int, int]]:
        resp = await self.get(path)
        expect_media_type(resp, "application/json")
        data = resp.json()
        if not isinstance(data, list):
            raise CheckFailed(f"GET {path}: a JSON {type(data).__name__}, not a list")
        if len(data) != count:
            raise CheckFailed(f"GET {path}: {len(data)} objects, expected {count}")
        worlds = [parse_world(item, f"GET {path}: item {n}") for n, item in enumerate(data)]
        if count >= 20 and len({i for i, _ in worlds}) == 1:
            raise CheckFailed(f"GET {path}: all {count} objects have id {worlds[0][0]}")
        return worlds

    async def stored(self, ids: Sequence[int]) -> dict[int, int]:
        rows = await self.conn.fetch(
            "SELECT id, randomnumber FROM world WHERE id = ANY($1::int[])", list(set(ids))
        )
        return dict(rows)

    async def expect_rows(self, what: str, worlds: Sequence[tuple[int, int]]) -> None:
        """Each (id, randomNumber) is the database's row (nothing writes meanwhile)."""
        stored = await self.stored([i for i, _ in worlds])
        for world_id, number in worlds:
            if stored.get(world_id) != number:
                raise CheckFailed(
                    f"{what}: id {world_id} has randomNumber {number}, "
                    f"the database has {stored.get(world_id)}"
                )

    async def expect_persisted(self, what: str, worlds: Sequence[tuple[int, int]]) -> None:
        """The database holds what was returned (any of the values of a repeated id)."""
        returned: dict[int, set[int]] = {}
        for world_id, number in worlds:
            returned.setdefault(world_id, set()).add(number)
        stored = await self.stored(list(returned))
        for world_id, numbers in returned.items():
            if stored.get(world_id) not in numbers:
                shown = ", ".join(map(str, sorted(numbers)))
                raise CheckFailed(
                    f"{what}: returned id {world_id} with randomNumber {shown}, but the "
                    f"database holds {stored.get(world_id)}: update not persisted"
                )


def expect_media_type(resp: Response, media_type: str) -> None:
    got = parse_content_type(resp.content_type)[0]
    if got != media_type:
        raise CheckFailed(
            f"GET {resp.path}: Content-Type {resp.content_type!r}, expected {media_type}"
        )


def expect_html_utf8(resp: Response) -> None:
    media_type, charset = parse_content_type(resp.content_type)
    if media_type != "text/html" or charset != "utf-8":
        raise CheckFailed(
            f"GET {resp.path}: Content-Type {resp.content_type!r}, "
            "expected 'text/html; charset=utf-8'"
        )


def parse_content_type(value: str) -> tuple[str, str | None]:
    message = Message()
    message["Content-Type"] = value
    charset = message.get_param("charset")
    return (
        message.get_content_type() if value else "",
        str(charset).lower() if isinstance(charset, str) else None,
    )


def parse_world(item: object, what: str) -> tuple[int, int]:
    """(id, randomNumber) of one world object, after checking its keys, types and ranges."""
    if not isinstance(item, dict):
        raise CheckFailed(f"{what}: {item!r} is not an object")
    if set(item) != {"id", "randomNumber"}:
        raise CheckFailed(f"{what}: keys {sorted(item)}, expected ['id', 'randomNumber']")
    for key in ("id", "randomNumber"):
        value = item[key]
        if type(value) is not int:
            raise CheckFailed(f"{what}: {key} is {value!r}, not an integer")
        if not 1 <= value <= 10_000:
            raise CheckFailed(f"{what}: {key} {value} is outside 1..10000")
    return item["id"], item["randomNumber"]


# --- fortunes --------------------------------------------------------------------


def fortunes_document(rows: Sequence[tuple[int, str]]) -> str:
    """TechEmpower's fortunes template, filled in."""
    body = "".join(f"<tr><td>{i}</td><td>{html.escape(m)}</td></tr>" for i, m in rows)
    return (
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
        f"<tr><th>id</th><th>message</th></tr>{body}</table></body></html>"
    )


class FortunesPage(HTMLParser):
    """The page as a token list (whitespace between tags ignored) and its table rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self._cells: list[str] | None = None
        self._cell: list[str] | None = None

    @classmethod
    def parse(cls, text: str) -> FortunesPage:
        page = cls()
        page.feed(text)
        page.close()
        return page

    def handle_decl(self, decl: str) -> None:
        self.tokens.append(f"<!{decl.lower()}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(f"<{tag}>")
        if tag == "tr":
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(f"</{tag}>")
        if tag == "td" and self._cells is not None and self._cell is not None:
            self._cells.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._cells is not None:
            if self._cells:
                self.rows.append((self._cells[0], self._cells[1] if len(self._cells) > 1 else ""))
            self._cells = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if data.strip():
            self.tokens.append(data.strip())


def compare_fortunes(got: Sequence[tuple[str, str]], expected: Sequence[tuple[int, str]]) -> None:
    """The rows, with the most telling reason first when they differ."""
    what = "GET /fortunes"
    rows = [(ident.strip(), message.strip()) for ident, message in got]
    want = [(str(i), m) for i, m in expected]
    if rows == want:
        return
    if ("0", ADDED_FORTUNE) not in rows:
        raise CheckFailed(
            f"{what}: the fortune added at request time (0, {ADDED_FORTUNE!r}) is missing"
        )
    missing = Counter(want) - Counter(rows)
    extra = Counter(rows) - Counter(want)
    if missing or extra:
        raise CheckFailed(
            f"{what}: {len(rows)} rows, expected {len(want)}; "
            f"missing {sorted(missing.elements())[:3]}, unexpected {sorted(extra.elements())[:3]}"
        )
    at = next(n for n, (a, b) in enumerate(zip(rows, want, strict=True)) if a != b)
    raise CheckFailed(
        f"{what}: rows not sorted by message: row {at + 1} is {rows[at]!r}, expected {want[at]!r}"
    )


def compare_tokens(got: Sequence[str], expected: Sequence[str]) -> None:
    for n, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            context = " ".join(got[max(0, n - 3) : n])
            raise CheckFailed(
                f"GET /fortunes: the document differs from TechEmpower's template after "
                f"{context!r}: {a!r} where {b!r} belongs"
            )
    if len(got) != len(expected):
        tail = got[len(expected) :] if len(got) > len(expected) else expected[len(got) :]
        side = "unexpected" if len(got) > len(expected) else "missing"
        raise CheckFailed(f"GET /fortunes: the document ends wrongly: {side} {tail[:5]!r}")


# --- running the checks ----------------------------------------------------------


def asyncpg_dsn(dsn: str) -> str:
    """asyncpg wants postgresql://; SQLAlchemy's postgresql+asyncpg:// is accepted too."""
    scheme, sep, rest = dsn.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


async def check_implementation(base_url: str, tests: Sequence[str], dsn: str) -> list[Failure]:
    """Check the implementation at ``base_url`` (its prefix included) on ``tests``."""
    failures = []
    db = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            checker = Checker(session, base_url, db)
            for test in tests:
                try:
                    await getattr(checker, test)()
                except CheckFailed as exc:
                    failures.append(Failure(test, str(exc)))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(Failure(test, f"request failed: {exc!r}"))
    finally:
        await db.close()
    return failures


def report(name: str, tests: Sequence[str], failures: Sequence[Failure]) -> None:
    by_test = {f.test: f for f in failures}
    for test in tests:
        failure = by_test.get(test)
        print(f"FAIL {name} {test}: {failure.reason}" if failure else f"PASS {name} {test}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(servers.BENCH_PYTHON))
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(servers.REGISTRY))
    args = parser.parse_args(argv)
    dsn = servers.database_url()
    ok = True
    for impl in servers.resolve(args.names):
        try:
            server = servers.start(impl, python=args.python, dsn=dsn)
        except servers.StartError as exc:
            print(f"FAIL {impl.name} (all tests): the server did not start: {exc}")
            ok = False
            continue
        try:
            failures = asyncio.run(check_implementation(server.base_url, impl.tests, dsn))
        finally:
            servers.stop(server)
        report(impl.name, impl.tests, failures)
        ok = ok and not failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
