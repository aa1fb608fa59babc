"""Holes in Jinja2: ``{% nocache %}`` in the extension, through Django's Jinja2 backend."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.test import Client, RequestFactory
from django.urls import path

import cachesweeper
from cachesweeper import holes
from tests.helpers import Counter
from tests.testapp.models import Article, Comment
from tests.testapp.views import CALLS, called

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("cache_backend"),
    pytest.mark.urls(__name__),
]

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

JINJA2 = {
    "BACKEND": "django.template.backends.jinja2.Jinja2",
    "NAME": "jinja2",
    "DIRS": [Path(__file__).parent / "jinja2"],
    "APP_DIRS": False,
    "OPTIONS": {
        "extensions": ["cachesweeper.jinja2.CacheSweeperExtension"],
        "context_processors": ["django.contrib.auth.context_processors.auth"],
    },
}


@pytest.fixture(autouse=True)
def _jinja2(settings: Any) -> Iterator[None]:
    settings.TEMPLATES = [*settings.TEMPLATES, JINJA2]
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="Holes")


def visitor() -> Client:
    """A new anonymous visitor, whose POSTs Django's CSRF check judges."""
    return Client(enforce_csrf_checks=True)


def _page(name: str) -> Callable[[HttpRequest], TemplateResponse]:
    @cachesweeper.cache_page(60, tags=["holes"])
    def view(request: HttpRequest) -> TemplateResponse:
        context = {
            "article": Article.objects.order_by("pk").first(),
            "comments": list(Comment.objects.order_by("pk")),
            "count": called(f"jinja_{name}"),
        }
        return TemplateResponse(request, f"holes_jinja/{name}.html", context, using="jinja2")

    return view


def vote(request: HttpRequest) -> HttpResponse:
    return HttpResponse("voted")


urlpatterns = [
    path("holes/form/", _page("form")),
    path("holes/captured/", _page("captured")),
    path("holes/login-bar/", _page("login_bar")),
    path("holes/vote/", vote),
]


def render(name: str, request: HttpRequest | None = None, **context: Any) -> str:
    return str(engines["jinja2"].get_template(name).render(context, request)).strip()


# -- pages -----------------------------------------------------------------------------------


def test_a_csrf_form_in_a_hole_is_rendered_once_and_every_visitor_gets_a_valid_token(
    article: Article,
) -> None:
    visitors = [visitor() for _ in range(3)]
    pages = [client.get("/holes/form/") for client in visitors]

    assert CALLS["jinja_form"] == 1  # one render, stored, served to the other two
    assert all("rendered 1" in page.content.decode() for page in pages)
    tokens = [TOKEN.search(page.content.decode()).group(1) for page in pages]  # type: ignore[union-attr]
    assert len(set(tokens)) == 3
    for client, page, token in zip(visitors, pages, tokens, strict=True):
        assert "csrftoken" in page.cookies
        assert "private" in page["Cache-Control"]
        answer = client.post("/holes/vote/", {"csrfmiddlewaretoken": token})
        assert answer.status_code == 200, answer.content


def test_captured_values_come_back_on_hits(article: Article) -> None:
    first = Comment.objects.create(article=article, text="one")
    second = Comment.objects.create(article=article, text="two")

    for _ in range(2):
        page = visitor().get("/holes/captured/").content.decode()
        assert f"one [hole {first.pk} at /holes/captured/]" in page
        assert f"two [hole {second.pk} at /holes/captured/]" in page
    assert CALLS["jinja_captured"] == 1


def test_the_backends_context_processors_run_in_the_hole() -> None:
    User.objects.create_user("ann", password="pw")
    anonymous = visitor().get("/holes/login-bar/").content.decode()
    ann = Client()
    assert ann.login(username="ann", password="pw")
    logged_in = ann.get("/holes/login-bar/").content.decode()
    again = visitor().get("/holes/login-bar/").content.decode()

    assert "Log in" in anonymous and "Hello" not in anonymous
    assert "Hello, ann" in logged_in and "Log in" not in logged_in
    assert again == anonymous
    assert CALLS["jinja_login_bar"] == 2  # logged-in visitors are not served shared pages


def test_a_process_that_never_compiled_the_template_fills_its_holes(
    article: Article, settings: Any
) -> None:
    visitor().get("/holes/form/")
    holes._bodies.clear()  # as in another process: no body parsed
    settings.TEMPLATES = [*settings.TEMPLATES]  # new engines, new environment, nothing compiled

    page = visitor().get("/holes/form/").content.decode()
    assert CALLS["jinja_form"] == 1 and TOKEN.search(page)


def test_a_template_from_a_bytecode_cache_registers_its_holes_when_rendered(
    article: Article, settings: Any, tmp_path: Path
) -> None:
    options = {**JINJA2["OPTIONS"], "bytecode_cache": jinja2.FileSystemBytecodeCache(tmp_path)}
    settings.TEMPLATES = [*settings.TEMPLATES[:-1], {**JINJA2, "OPTIONS": options}]
    visitor().get("/holes/form/")  # compiled, and stored as bytecode
    holes._bodies.clear()
    settings.TEMPLATES = [*settings.TEMPLATES]  # a new environment loads the bytecode, unparsed
    cachesweeper.invalidate_tag("holes")

    page = visitor().get("/holes/form/").content.decode()
    assert CALLS["jinja_form"] == 2 and TOKEN.search(page)


# -- fragments and lists -----------------------------------------------------------------------


def test_a_hole_in_a_fragment_is_filled_on_hits(article: Article) -> None:
    factory, counter = RequestFactory(), Counter()
    first = render("holes_jinja/in_fragment.html", factory.get("/?who=ann"), **locals())
    second = render("holes_jinja/in_fragment.html", factory.get("/?who=bob"), **locals())

    assert first == "<h1>Holes 1</h1>for ann"
    assert second == "<h1>Holes 1</h1>for bob"  # a hit, its hole filled for bob


def test_holes_in_a_cached_list_are_filled_from_the_list_entry(article: Article) -> None:
    comments = [Comment.objects.create(article=article, text=text) for text in ("a", "b", "c")]
    expected = "".join(f"<li>{c.text} ({c.pk} for WHO)</li>" for c in comments)
    for who in ("ann", "bob", "cy"):  # a miss, then the list entry's hits
        request = RequestFactory().get(f"/?who={who}")
        html = render("holes_jinja/in_list.html", request, comments=comments)
        assert html == expected.replace("WHO", who)


def test_a_sweep_re_renders_the_fragment_and_keeps_its_hole(article: Article) -> None:
    counter = Counter()
    render("holes_jinja/in_fragment.html", RequestFactory().get("/?who=ann"), **locals())
    cachesweeper.invalidate_cache_for(article)
    html = render("holes_jinja/in_fragment.html", RequestFactory().get("/?who=bob"), **locals())
    assert html == "<h1>Holes 2</h1>for bob"


# -- in place, escaping, syntax ----------------------------------------------------------------


def test_a_hole_outside_anything_cached_renders_in_place_with_its_values() -> None:
    source = (
        "{% set x = 5 %}a{% nocache y=x + 1, z='<b>' %}[{{ x }} {{ y }} {{ z }}]{% endnocache %}b"
    )
    html = str(engines["jinja2"].from_string(source).render({}))
    assert html == "a[5 6 &lt;b&gt;]b"


def test_a_hole_in_a_fragment_is_escaped_as_the_template_is(article: Article) -> None:
    source = (
        "{% cachesweeper article, 60 %}{{ article.title }}"
        "{% nocache t='<i>' %}{{ t }}{% endnocache %}{% endcachesweeper %}"
    )
    template = engines["jinja2"].from_string(source)
    for _ in range(2):
        assert str(template.render({"article": article})) == "Holes&lt;i&gt;"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("x", "takes only name=value pairs"),
        ("x=1 y=2", "separated by commas"),
        ("x=1, x=2", "got 'x' twice"),
    ],
)
def test_bad_arguments_fail_at_parse_time(arguments: str, message: str) -> None:
    environment = jinja2.Environment(extensions=["cachesweeper.jinja2.CacheSweeperExtension"])
    with pytest.raises(jinja2.TemplateSyntaxError, match=message):
        environment.from_string(f"{{% nocache {arguments} %}}{{% endnocache %}}")
