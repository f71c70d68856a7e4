"""HTML forms (WTForms) through HTTP: re-display, errors, multi-values, GET forms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectFactory, site_client

FORMS = """\
from wtforms import (
    BooleanField, IntegerField, PasswordField, RadioField, SelectChoice as C, SelectField,
    SelectMultipleField, StringField, validators, widgets,
)

from aiosite.forms import Form


class SignupForm(Form):
    name = StringField(
        "Name", [validators.InputRequired(), validators.Length(max=20)],
        description="As others will see it",
    )
    age = IntegerField("Age", [validators.Optional(), validators.NumberRange(min=13)])
    password = PasswordField("Password", [validators.InputRequired()])
    newsletter = BooleanField("Send me the newsletter")
    topics = SelectMultipleField(
        "Topics", choices=[C("py", "Python"), C("js", "JavaScript"), C("rs", "Rust")]
    )
    plan = RadioField("Plan", choices=[C("free", "Free"), C("pro", "Pro")], default="free")
    days = SelectMultipleField(
        "Days", choices=[C("mon", "Monday"), C("tue", "Tuesday")],
        widget=widgets.ListWidget(prefix_label=False), option_widget=widgets.CheckboxInput(),
    )


class SearchForm(Form):
    q = StringField("Search", [validators.InputRequired()])
    sort = SelectField("Sort", choices=[C("new", "Newest"), C("old", "Oldest")], default="new")
"""

ROUTES = """\
import asyncio

from aiosite import Routes, json_response, render

from .forms import SearchForm, SignupForm

routes = Routes()
TAKEN = {"admin", "<b>boss</b>"}


async def name_taken(name):
    await asyncio.sleep(0)  # stands for a database query
    return name in TAKEN


async def signup(request):
    form = await SignupForm.from_request(request, data={"name": request.query.get("invite")})
    if form.validate_on_submit():
        if await name_taken(form.name.data):
            form.add_error("name", f"The name {form.name.data} is taken.")
        if form.is_valid:
            data = {k: v for k, v in form.data.items() if k != "password"}
            return json_response(data)
    return await render(request, "shop/signup.html", {"form": form})


routes.get("/signup", signup, name="signup")
routes.post("/signup", signup, name="signup_post")


@routes.get("/search", name="search")
async def search(request):
    form = await SearchForm.from_request(request)
    results = None
    if form.validate_on_submit():
        results = [f"{form.q.data} ({form.sort.data})"]
    return await render(request, "shop/search.html", {"form": form, "results": results})


@routes.get("/find", name="find")
async def find(request):
    form = await SearchForm.from_request(request, prefix="s-")
    return json_response({"submitted": form.submitted, "q": form.q.data, "sort": form.sort.data})
"""

SIGNUP = """\
{% import "aiosite/forms.html" as forms %}
<form method="post">{{ csrf_input() }}
{{ forms.fields(form) }}
</form>
"""

SEARCH = """\
{% import "aiosite/forms.html" as forms %}
<form method="get">
{{ forms.field(form.q, placeholder="Find...") }}
{{ forms.field(form.sort) }}
</form>
{% if results is not none %}<ol>{% for r in results %}<li>{{ r }}</li>{% endfor %}</ol>{% endif %}
"""

FILES = {
    "PKG/shop/__init__.py": 'from aiosite import App\n\napp = App("shop", prefix="")\n',
    "PKG/shop/forms.py": FORMS,
    "PKG/shop/routes.py": ROUTES,
    "PKG/shop/templates/shop/signup.html": SIGNUP,
    "PKG/shop/templates/shop/search.html": SEARCH,
}

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(FILES, apps=["shop"])


async def token(client: Client) -> str:
    page = await (await client.get("/signup")).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


async def post_signup(client: Client, fields: list[tuple[str, str]]) -> tuple[int, str]:
    resp = await client.post("/signup", data=[("csrf_token", await token(client)), *fields])
    return resp.status, await resp.text()


def errors_of(page: str, field: str) -> list[str]:
    block = re.search(rf'<ul class="field-errors" id="{field}-errors">(.*?)</ul>', page, re.S)
    return re.findall(r"<li>(.*?)</li>", block.group(1)) if block else []


def tag(page: str, field_id: str) -> str:
    match = re.search(rf'<(?:input|select)[^>]*\bid="{field_id}"[^>]*>', page)
    assert match is not None, f"no input {field_id} in {page}"
    return match.group(0)


VALID = [
    ("name", "Ada"),
    ("age", "36"),
    ("password", "secret"),
    ("newsletter", "y"),
    ("topics", "py"),
    ("topics", "rs"),
    ("plan", "pro"),
    ("days", "mon"),
    ("days", "tue"),
]


async def test_first_display_shows_initial_values_and_no_errors(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/signup", params={"invite": "Grace"})
        page = await resp.text()
    assert resp.status == 200
    assert 'value="Grace"' in tag(page, "name")
    assert 'aria-describedby="name-help"' in tag(page, "name")
    assert '<p class="field-help" id="name-help">As others will see it</p>' in page
    assert "required" in tag(page, "name")
    assert "field-errors" not in page
    assert "checked" in tag(page, "plan-0")  # the default, Free
    assert '<label for="name">Name</label>' in page


async def test_invalid_submission_is_redisplayed_with_typed_values_and_escaped_errors(
    project: Path,
) -> None:
    typed = '<script>alert("x")</script>'
    async with site_client(project) as client:
        status, page = await post_signup(
            client,
            [
                ("name", typed),
                ("age", "twelve"),
                ("password", "hunter2"),
                ("newsletter", "y"),
                ("topics", "js"),
                ("topics", "rs"),
                ("plan", "pro"),
                ("days", "tue"),
            ],
        )
    assert status == 200
    assert typed not in page
    name = tag(page, "name")
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in name
    assert 'aria-describedby="name-help name-errors"' in name
    assert 'aria-invalid="true"' in name
    assert errors_of(page, "name") == ["Field cannot be longer than 20 characters."]
    assert 'value="twelve"' in tag(page, "age")
    assert errors_of(page, "age")[0] == "Not a valid integer value."
    assert 'aria-describedby="age-errors"' in tag(page, "age")
    # What was typed comes back, except the password.
    assert "hunter2" not in page
    assert "checked" in tag(page, "newsletter")
    assert re.search(r'<option selected value="js">JavaScript</option>', page)
    assert re.search(r'<option selected value="rs">Rust</option>', page)
    assert re.search(r'<option value="py">Python</option>', page)
    assert "checked" in tag(page, "plan-1")
    assert "checked" not in tag(page, "plan-0")
    assert "checked" in tag(page, "days-1")
    assert "checked" not in tag(page, "days-0")
    assert errors_of(page, "password") == []


async def test_valid_submission_with_checkboxes_and_multiple_values(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.post("/signup", data=[("csrf_token", await token(client)), *VALID])
        assert resp.status == 200
        data = await resp.json()
    assert data == {
        "name": "Ada",
        "age": 36,
        "newsletter": True,
        "topics": ["py", "rs"],
        "plan": "pro",
        "days": ["mon", "tue"],
    }


async def test_unchecked_boxes_and_no_selection_are_false_and_empty(project: Path) -> None:
    async with site_client(project) as client:
        fields = [("name", "Ada"), ("password", "secret"), ("plan", "free")]
        resp = await client.post("/signup", data=[("csrf_token", await token(client)), *fields])
        data = await resp.json()
    assert data["newsletter"] is False
    assert data["topics"] == []
    assert data["days"] == []
    assert data["age"] is None


async def test_a_choice_that_was_not_offered_is_an_error(project: Path) -> None:
    async with site_client(project) as client:
        fields = [f for f in VALID if f[0] != "topics"] + [("topics", "cobol")]
        status, page = await post_signup(client, fields)
    assert status == 200
    assert errors_of(page, "topics") == ["&#39;cobol&#39; is not a valid choice for this field."]


async def test_an_error_found_in_the_view_is_shown_escaped(project: Path) -> None:
    async with site_client(project) as client:
        fields = [("name", "<b>boss</b>"), *[f for f in VALID if f[0] != "name"]]
        status, page = await post_signup(client, fields)
    assert status == 200
    assert errors_of(page, "name") == ["The name &lt;b&gt;boss&lt;/b&gt; is taken."]
    assert "<b>boss</b>" not in page


async def test_multipart_submissions_are_read_too(project: Path) -> None:
    async with site_client(project) as client:
        data = FormData(default_to_multipart=True)
        data.add_field("csrf_token", await token(client))
        for name, value in VALID:
            data.add_field(name, value)
        # A file in a form that is not an upload route is not a form value.
        data.add_field("name", b"x", filename="x.txt", content_type="text/plain")
        resp = await client.post("/signup", data=data)
        assert resp.status == 200
        assert (await resp.json())["topics"] == ["py", "rs"]


async def test_a_post_without_the_csrf_token_is_refused(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.post("/signup", data=VALID)
        assert resp.status == 403


async def test_get_search_form_not_submitted_until_its_fields_are_in_the_query(
    project: Path,
) -> None:
    async with site_client(project) as client:
        first = await (await client.get("/search")).text()
        unrelated = await (await client.get("/search", params={"page": "2"})).text()
        empty = await (await client.get("/search", params={"q": ""})).text()
        resp = await client.get("/search", params={"q": "<i>tea</i>", "sort": "old"})
        found = await resp.text()
    for page in (first, unrelated):
        assert "field-errors" not in page
        assert "<ol>" not in page
        assert 'placeholder="Find..."' in tag(page, "q")
    assert errors_of(empty, "q") == ["This field is required."]
    assert resp.status == 200
    assert 'value="&lt;i&gt;tea&lt;/i&gt;"' in tag(found, "q")
    assert "<li>&lt;i&gt;tea&lt;/i&gt; (old)</li>" in found
    assert '<option selected value="old">Oldest</option>' in found


async def test_a_prefixed_get_form_reads_its_prefixed_names(project: Path) -> None:
    async with site_client(project) as client:
        unprefixed = await (await client.get("/find", params={"q": "tea"})).json()
        prefixed = await (await client.get("/find", params={"s-q": "tea", "s-sort": "old"})).json()
    assert unprefixed == {"submitted": False, "q": None, "sort": "new"}
    assert prefixed == {"submitted": True, "q": "tea", "sort": "old"}
