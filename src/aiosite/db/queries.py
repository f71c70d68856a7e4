"""Query helpers views need on every site: ``get_or_404`` and ``paginate``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web
from sqlalchemy import BigInteger, Integer, Select, SmallInteger, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

T = TypeVar("T")
M = TypeVar("M")

DEFAULT_PER_PAGE = 20
LAST_PAGE = "last"
_INTEGER_BITS = {SmallInteger: 16, Integer: 32, BigInteger: 64}
# Page links shown on each side of the current page, and at either end.
_AROUND = 2
_ENDS = 1


async def get_or_404(
    session: AsyncSession,
    model: type[M],
    ident: Any = None,
    /,
    *,
    options: Sequence[ORMOption] = (),
    **filters: Any,
) -> M:
    """The ``model`` row with primary key ``ident``, or the one matching ``filters``;
    ``HTTPNotFound`` when there is none. ``options`` are loader options for the query,
    e.g. ``options=[selectinload(Post.tags)]``.

    A primary key given as text (from the URL) is converted to the key's Python type;
    text that does not convert means no such row, a 404 as well.
    """
    if (ident is None) == (not filters):
        raise TypeError("get_or_404 takes a primary key or keyword filters (one of the two)")
    found: M | None
    if ident is not None:
        key = _coerce_key(model, ident)
        found = None if key is None else await session.get(model, key, options=options)
    else:
        statement = select(model).filter_by(**filters).options(*options)
        # unique(): a joinedload of a collection repeats the row once per related row.
        found = (await session.execute(statement)).unique().scalar_one_or_none()
    if found is None:
        raise web.HTTPNotFound(text=f"No {model.__name__} matches the given query.")
    return found


def _coerce_key(model: type[Any], ident: Any) -> Any:
    columns = inspect(model).primary_key
    if len(columns) != 1 or not isinstance(ident, str):
        return ident
    try:
        python_type = columns[0].type.python_type
    except NotImplementedError:  # pragma: no cover - a custom type without one
        return ident
    if python_type is str:
        return ident
    try:
        key = python_type(ident)
    except (TypeError, ValueError):
        return None
    # A number the column cannot hold is no row either, not a driver error (a 500).
    if isinstance(key, int) and isinstance(columns[0].type, Integer):
        bits = _INTEGER_BITS.get(type(columns[0].type), 32)
        if not -(2 ** (bits - 1)) <= key < 2 ** (bits - 1):
            return None
    return key


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a query's results, with what a template needs for page links."""

    items: Sequence[T]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one, even with no items)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.has_next else None

    @property
    def previous_number(self) -> int | None:
        return self.number - 1 if self.has_previous else None

    @property
    def start_index(self) -> int:
        """The 1-based position of the first item on this page (0 when empty)."""
        return (self.number - 1) * self.per_page + 1 if self.items else 0

    @property
    def end_index(self) -> int:
        return self.start_index + len(self.items) - 1 if self.items else 0

    @property
    def numbers(self) -> list[int | None]:
        """Page numbers to link, ``None`` where a run of them is left out:
        ``[1, None, 4, 5, 6, 7, 8, None, 20]``."""
        shown = set(range(1, _ENDS + 1)) | set(range(self.pages - _ENDS + 1, self.pages + 1))
        shown |= set(range(self.number - _AROUND, self.number + _AROUND + 1))
        result: list[int | None] = []
        previous = 0
        for number in sorted(n for n in shown if 1 <= n <= self.pages):
            if number - previous == 2:
                result.append(number - 1)  # a gap of one page: show it, not "…"
            elif number - previous > 2:
                result.append(None)
            result.append(number)
            previous = number
        return result

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    *,
    page: int | str | None = 1,
    per_page: int = DEFAULT_PER_PAGE,
) -> Page[Any]:
    """Run ``statement`` for one page: ``await paginate(session, select(Post), page=2)``.

    ``page`` may be the raw ``?page=`` text, or ``"last"`` (as in Django): the last page
    (the newest rows of a list that grows at its end), without the caller counting the
    rows to find its number. A page that is not a number, below 1 or past the last page
    is a 404, as an unknown URL would be.
    """
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    number = None if page == LAST_PAGE else _page_number(page)
    count = select(func.count()).select_from(statement.order_by(None).subquery())
    total = (await session.execute(count)).scalar_one()
    pages = max(1, -(-total // per_page))
    if number is None:
        number = pages
    elif number > pages:
        raise web.HTTPNotFound(text=f"There is no page {number}; the last page is {pages}.")
    result = await session.execute(statement.limit(per_page).offset((number - 1) * per_page))
    single_entity = len(statement.column_descriptions) == 1
    result = result.unique()  # see get_or_404
    items: Sequence[Any] = result.scalars().all() if single_entity else result.all()
    return Page(items=items, number=number, per_page=per_page, total=total)


def _page_number(page: int | str | None) -> int:
    if page is None or page == "":
        return 1
    try:
        number = int(page)
    except ValueError:
        raise web.HTTPNotFound(text=f"{page!r} is not a page number.") from None
    if number < 1:
        raise web.HTTPNotFound(text=f"There is no page {number}; pages start at 1.")
    return number
