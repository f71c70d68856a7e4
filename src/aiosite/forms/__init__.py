"""HTML forms with WTForms, read from aiohttp requests (docs/forms.md).

``Form`` is a ``wtforms.Form`` with ``await Form.from_request(request)``; the
``aiosite/forms.html`` template has macros that render a field with its label, errors
and the ARIA attributes that tie them together. The forms battery needs no ``setup``.
"""

from __future__ import annotations

from aiosite.forms.form import Form, FormInput, read_form

__all__ = ["Form", "FormInput", "read_form"]
