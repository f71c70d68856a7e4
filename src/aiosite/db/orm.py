"""The class of the site's ORM sessions: SQLAlchemy's ``AsyncSession``, with a cheaper
``get()``.

``session.get(Model, pk)`` builds a new ``SELECT`` for every call that misses the
identity map (``select(mapper)``, its WHERE clause, options), and SQLAlchemy then
computes the new statement's cache key to find its compiled form: measured at a quarter
of the CPU time of a ``get()`` that runs its query on PostgreSQL (about 50 µs of 200),
and the most common query of a site (a row by its key, the logged-in user).
``SiteSession.get`` builds that statement once per model and runs it with
``execute()``: the same SQL, the same loading (into the identity map, with the model's
eager loaders), the same result. Anything else is SQLAlchemy's own ``get()``: a key
already in the identity map (which answers without a query, or refreshes an expired
object), a call with options (``options=``, ``with_for_update=``,
``populate_existing=``...), a composite or unusual key, a model with inheritance.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from sqlalchemy.util import EMPTY_DICT

if TYPE_CHECKING:
    from sqlalchemy.orm._typing import _O, OrmExecuteOptionsParameter
    from sqlalchemy.orm.interfaces import ORMOption
    from sqlalchemy.orm.session import _EntityBindKey, _PKIdentityArgument
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.selectable import ForUpdateParameter

# Primary key values whose identity-map key is the value itself (bool, a subclass of
# int, is left to SQLAlchemy).
_PLAIN_KEYS = frozenset({int, str, uuid.UUID})


@dataclass(frozen=True, slots=True)
class _GetPlan:
    mapper: Mapper[Any]
    statement: Select[Any]


class SiteSession(AsyncSession):
    """What ``db_session(request)``, ``session_scope()`` and ``run_transaction()`` give:
    an ``AsyncSession`` whose ``get()`` costs less (see the module's docstring)."""

    # Per mapped class: its plan, or None when its get() stays SQLAlchemy's own. Each
    # Database has a subclass with a dict of its own (``session_class()``), dropped with
    # it: the plans hold the mappers, and so the classes.
    _get_plans: ClassVar[dict[type, _GetPlan | None]] = {}

    async def get(
        self,
        entity: _EntityBindKey[_O],
        ident: _PKIdentityArgument,
        *,
        options: Sequence[ORMOption] | None = None,
        populate_existing: bool | None = None,
        with_for_update: ForUpdateParameter = None,
        identity_token: Any | None = None,
        execution_options: OrmExecuteOptionsParameter = EMPTY_DICT,
    ) -> _O | None:
        plan = None
        if (
            type(ident) in _PLAIN_KEYS
            and options is None
            and populate_existing is None
            and with_for_update is None
            and identity_token is None
            and not execution_options
            and isinstance(entity, type)
        ):
            plans = self._get_plans
            try:
                plan = plans[entity]
            except KeyError:
                plan = plans[entity] = _plan(entity)
        if plan is None or plan.mapper.identity_key_from_primary_key((ident,)) in (
            self.sync_session.identity_map
        ):
            return await super().get(
                entity,
                ident,
                options=options,
                populate_existing=populate_existing,
                with_for_update=with_for_update,
                identity_token=identity_token,
                execution_options=execution_options,
            )
        result = await self.execute(plan.statement, {"pk": ident})
        found: _O | None = result.unique().scalars().one_or_none()
        return found


def session_class() -> type[SiteSession]:
    """A ``SiteSession`` class with a cache of its own, for one ``Database``."""
    return type("SiteSession", (SiteSession,), {"_get_plans": {}})


def _plan(entity: type) -> _GetPlan | None:
    mapper: Mapper[Any] | None = inspect(entity, raiseerr=False)
    if (
        not isinstance(mapper, Mapper)
        or len(mapper.primary_key) != 1
        or mapper.inherits is not None
        or mapper.polymorphic_on is not None
        or len(mapper.self_and_descendants) > 1
        or mapper.always_refresh
    ):
        return None
    statement = select(mapper).where(mapper.primary_key[0] == bindparam("pk"))
    return _GetPlan(mapper, statement)
