"""A WTForms ``Form`` that reads itself from an aiohttp request."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Self

import wtforms
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiMapping

# Methods whose form comes in the query string, not the body.
QUERY_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})


class FormInput:
    """aiohttp's ``MultiDictProxy`` as WTForms reads form input.

    WTForms asks ``formdata.getlist(name)``; aiohttp's multidicts have ``getall``, which
    raises for a missing key. Only text values are passed on: a file that came with the
    form (a ``FileField`` of ``request.post()``) is not a form value; files go through
    ``aiosite.uploads``.
    """

    def __init__(self, data: MultiMapping[Any]) -> None:
        self._data = data

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._data))

    def __len__(self) -> int:
        return len(dict.fromkeys(self._data))

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def getlist(self, name: str) -> list[str]:
        return [value for value in self._data.getall(name, ()) if isinstance(value, str)]


class Form(wtforms.Form):  # type: ignore[misc, unused-ignore]
    """A WTForms form filled from a request: ``await MyForm.from_request(request)``.

    WTForms' own CSRF stays off: aiosite's CSRF check already refuses every unsafe
    request without the session's token, and ``{{ csrf_input() }}`` puts it in the form.
    """

    # Whether the request carried this form: an unsafe method (POST, PUT, ...), or a GET
    # whose query names at least one of its fields (a search form on its first display
    # is not submitted, so it shows no "required" errors).
    submitted: bool = False

    @classmethod
    async def from_request(
        cls,
        request: web.Request,
        *,
        obj: Any = None,
        data: Mapping[str, Any] | None = None,
        prefix: str = "",
        **kwargs: Any,
    ) -> Self:
        """The form with what the request sent, over ``obj`` / ``data`` (initial values,
        e.g. the row being edited) where it sent nothing."""
        if request.method not in QUERY_METHODS:
            formdata = FormInput(await read_form(request))
            form = cls(formdata, obj=obj, data=data, prefix=prefix, **kwargs)
            form.submitted = True
            return form
        form = cls(obj=obj, data=data, prefix=prefix, **kwargs)
        # Only the bound fields know their prefixed names, so the query is read afterwards.
        query = request.query
        if any(field.name in query for field in form):
            form.process(FormInput(query), obj=obj, data=data, **kwargs)
            form.submitted = True
        return form

    def validate_on_submit(self, extra_validators: Mapping[str, Any] | None = None) -> bool:
        """``submitted and validate()``: the usual test in a view that shows and handles
        the same form."""
        return self.submitted and bool(self.validate(extra_validators=extra_validators))

    def add_error(self, field: str | Any, message: str) -> None:
        """Add ``message`` to a field's errors (by name or the field itself), e.g. after an
        async check in the view (``"this address is taken"``); the form is then invalid."""
        target = self[field] if isinstance(field, str) else field
        # A field's errors are a tuple until validate() has run, a list after.
        target.errors = [*target.errors, message]

    @property
    def is_valid(self) -> bool:
        """No field has errors (after ``validate()`` and any ``add_error``)."""
        return not self.errors


async def read_form(request: web.Request) -> MultiMapping[Any]:
    """``await request.post()``, with a body that cannot be read answered 400, not 500."""
    try:
        return await request.post()
    except web.HTTPException:
        raise  # 413: a body over server.client_max_size
    except (ValueError, LookupError, HttpProcessingError):
        # A malformed body, or a charset Python does not know.
        raise web.HTTPBadRequest(
            text=f"The form data could not be read: it is not valid {request.content_type} data."
        ) from None
