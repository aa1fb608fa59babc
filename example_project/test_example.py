"""End-to-end test of the example blog: the flow a person clicking through would see.

Run it with ``pytest example_project/test_example.py`` (from the repository root).

The example has its own settings module, which cannot share a process with the
library's test settings, so everything Django-related runs in subprocesses against a
throw-away SQLite database (``EXAMPLE_DB``): ``manage.py check``, ``manage.py
migrate`` (which also seeds the demo data) and this very file run as a script
(``--flow``), which drives the blog with Django's test client and prints, as JSON,
what each page's footer and headers reported. The assertions run here, in pytest.

The test client goes through the same footer layer as ``example_project/wsgi.py``
(``blog.showcase.ShowMechanism``, a handler mixin), and one request goes through the
WSGI application itself.

Fragments are recognised the way a reader of the footer would: by their dependency
names. The per-comment fragments depend on ``blog.comment.N``; the article fragment
depends on ``blog.article.N``; the list on ``blog.article`` and ``blog.author``; the
author page is the one "page" row (a ``cache_page`` entry).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLE_DIR.parent
ARTICLE_SLUG = "why-key-based-expiry"  # seeded by blog/migrations/0002_demo_data.py
RESULT_MARKER = "FLOW-RESULT:"
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SLOW_VIEW = 1.0  # seconds the cached author page takes to render (EXAMPLE_SLOW_VIEW)

Event = dict[str, Any]  # {"status": "hit", "kind": "fragment", "key": "...", "deps": [...]}


# --------------------------------------------------------------------------- page parsing
# Used by the subprocess (on HTML) - kept here so the whole check reads as one file.


class _FooterParser(HTMLParser):
    """Collects the footer: lookups (<tr data-status ...>), headers, round trips."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.headers: dict[str, str | None] = {}
        self.round_trips: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "footer" and "data-round-trips" in attributes:
            self.round_trips = int(attributes["data-round-trips"] or 0)
        if tag == "tr" and "data-status" in attributes:
            self.events.append(
                {
                    "status": attributes["data-status"],
                    "kind": attributes.get("data-kind"),
                    "key": attributes.get("data-key") or "",
                    "deps": (attributes.get("data-deps") or "").split(),
                }
            )
        if tag == "tr" and "data-header" in attributes:
            self.headers[attributes["data-header"] or ""] = attributes.get("data-value")


def parse_footer(html: str) -> _FooterParser:
    parser = _FooterParser()
    parser.feed(html)
    return parser


def parse_scores(html: str) -> dict[str, int]:
    """Vote total shown for each comment, by comment pk (a str: the result goes through JSON)."""
    pattern = re.compile(r'id="comment-(\d+)".*?<span class="score">(-?\d+)</span>', re.S)
    return {pk: int(score) for pk, score in pattern.findall(html)}


def parse_messages(html: str) -> list[str]:
    block = re.search(r'<ul class="messages">(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", block.group(1), re.S) if block else []


def page_record(status: int, headers: dict[str, str], html: str) -> dict[str, Any]:
    footer = parse_footer(html)
    return {
        "status": status,
        "headers": headers,
        "events": footer.events,
        "footer_headers": footer.headers,
        "round_trips": footer.round_trips,
        "scores": parse_scores(html),
        "messages": parse_messages(html),
        "html": html,
    }


# --------------------------------------------------------------------------- the flow
# Runs in a subprocess with the example's settings: `python test_example.py --flow`.


def _client() -> Any:
    """Django's test client, through the footer layer that example_project/wsgi.py uses."""
    from blog.showcase import ShowMechanism
    from django.test import Client
    from django.test.client import ClientHandler

    class Handler(ShowMechanism, ClientHandler):
        pass

    client = Client()
    client.handler = Handler(enforce_csrf_checks=True)  # as a browser is checked
    return client


def run_flow() -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    import django

    django.setup()
    from django.apps import apps
    from django.test.signals import template_rendered
    from django.test.utils import setup_test_environment

    Article = apps.get_model("blog", "Article")
    setup_test_environment()  # lets the test client's "testserver" host through
    client = _client()
    article = Article.objects.select_related("author").get(slug=ARTICLE_SLUG)
    author = article.author
    detail_url = article.get_absolute_url()
    author_url = author.get_absolute_url()
    comment_pks = list(article.comments.values_list("pk", flat=True))
    voted = comment_pks[1]
    pages: dict[str, Any] = {}

    # How often the cached author page's view really ran: its template renders once per run.
    author_renders: list[float] = []

    def on_render(sender: Any, template: Any, **kwargs: Any) -> None:
        if template.name == "blog/author_detail.html":
            author_renders.append(time.monotonic())

    template_rendered.connect(on_render)

    def visit(name: str, path: str, client: Any = client) -> None:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        pages[name] = page_record(200, dict(response.items()), response.content.decode())
        pages[name]["author_renders"] = len(author_renders)
        pages[name]["cookie_set"] = "csrftoken" in response.cookies

    def post(
        name: str, path: str, data: dict[str, str], token_from: str, client: Any = client
    ) -> None:
        """POST with the CSRF token of a page this client was shown."""
        token = TOKEN.search(pages[token_from]["html"])
        assert token is not None, token_from
        response = client.post(path, {**data, "csrfmiddlewaretoken": token.group(1)})
        assert response.status_code == 302, (path, response.status_code)
        pages[name] = {"status": 302, "headers": dict(response.items())}

    visit("list_first", "/")
    visit("list_second", "/")
    visit("first", detail_url)
    # Another anonymous visitor: the stored page, with their own CSRF token in its holes.
    stranger = _client()
    visit("second", detail_url, stranger)
    # The same article at another URL: another page entry, but its fragments hit.
    visit("other_url", f"{detail_url}?from=list")
    refused = stranger.post(f"/comments/{voted}/vote/", {"value": "1"})  # no token
    pages["vote_without_token"] = {"status": refused.status_code}
    post("post_vote", f"/comments/{voted}/vote/", {"value": "1"}, "second", stranger)
    visit("after_vote", detail_url, stranger)
    visit("settled", detail_url, stranger)
    visit("settled_again", detail_url, stranger)
    comment = {"author_name": "Test", "body": "A brand-new comment."}
    post("post_comment", f"{detail_url}comment/", comment, "first")
    new_comment = article.comments.order_by("-pk").values_list("pk", flat=True).first()
    visit("after_comment", detail_url)
    edit = {"title": "Edited title", "body": "Edited body."}
    post("post_edit", f"{detail_url}edit/", edit, "first")
    visit("list_after_edit", "/")
    visit("after_edit", detail_url)

    # The author page: cache_page(300, tags=[author, Article], grace=30).
    visit("author_first", author_url)
    visit("author_second", author_url)
    author.save()  # as the admin would: sweeps blog.author.N, one of the page's tags
    visit("author_after_save", author_url)
    author.save()
    # Grace: one request re-renders the swept page (slowly), a concurrent one is served
    # the previous page at once.
    racer = threading.Thread(target=visit, args=("author_race_renders", author_url, _client()))
    racer.start()
    time.sleep(SLOW_VIEW / 3)
    started = time.monotonic()
    visit("author_race_stale", author_url, _client())
    pages["author_race_stale"]["seconds"] = time.monotonic() - started
    racer.join()
    visit("author_settled", author_url)

    # One request through the real WSGI entry point (what runserver serves).
    from wsgiref.util import setup_testing_defaults

    from example_project.wsgi import application

    environ: dict[str, Any] = {"PATH_INFO": "/", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    started_response: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started_response.update(status=status, headers=dict(headers))
        return lambda data: None

    body = b"".join(application(environ, start_response)).decode()
    pages["wsgi"] = page_record(
        int(started_response["status"].split()[0]), started_response["headers"], body
    )

    return {
        "article_pk": article.pk,
        "author_pk": author.pk,
        "author_article_pks": list(author.articles.values_list("pk", flat=True)),
        "comment_pks": comment_pks,
        "voted": voted,
        "new_comment": new_comment,
        "detail_url": detail_url,
        "pages": pages,
    }


def run_toolbar_flow() -> dict[str, Any]:
    """With django-debug-toolbar on: the page still works and carries the cachesweeper panel."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_test_environment

    setup_test_environment()
    response = _client().get("/")  # the list page: shareable, without the toolbar
    html = response.content.decode()
    return {
        "installed": "debug_toolbar" in settings.INSTALLED_APPS,
        "page": page_record(response.status_code, dict(response.items()), html),
    }


# --------------------------------------------------------------------------- pytest side


def _env(db: Path, toolbar: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CACHESWEEPER_CACHE", None)  # LocMem: no servers needed
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    env["DJANGO_DEBUG"] = "1"
    env["EXAMPLE_DB"] = str(db)
    env["EXAMPLE_SLOW_VIEW"] = str(SLOW_VIEW)
    env["EXAMPLE_TOOLBAR"] = "1" if toolbar else "0"
    # The package is normally pip-installed (-e .); the repository root is a fallback.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO_ROOT)) if p)
    return env


def _run(args: Sequence[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _flow(tmp_path_factory: Any, flag: str = "--flow", toolbar: bool = False) -> dict[str, Any]:
    env = _env(tmp_path_factory.mktemp("example") / "db.sqlite3", toolbar)
    _run(["manage.py", "check", "--fail-level", "WARNING"], env)
    _run(["manage.py", "migrate", "--noinput"], env)
    out = _run([str(Path(__file__).resolve()), flag], env)
    line = next(line for line in out.splitlines() if line.startswith(RESULT_MARKER))
    result: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
    return result


def _roles(events: list[Event], article_pk: int) -> dict[str, str]:
    """Map role -> status: "article", "list", "page", "comment:<pk>", "summary:<pk>"."""
    roles: dict[str, str] = {}
    for event in events:
        deps = event["deps"]
        if event["kind"] == "page":
            role = "page"
        elif f"blog.article.{article_pk}" in deps:
            role = "article"
        elif comments := [d for d in deps if d.startswith("blog.comment.")]:
            assert len(comments) == 1, event
            role = "comment:" + comments[0].rsplit(".", 1)[1]
        elif "blog.article" in deps and "blog.author" in deps:
            role = "list"
        else:
            role = "unknown:" + " ".join(deps)
        assert role not in roles, f"{role} looked up twice on one page: {events}"
        roles[role] = event["status"]
    return roles


def _author_roles(events: list[Event]) -> dict[str, str]:
    """On the author page: "page", and "summary:<pk>" per article fragment."""
    roles: dict[str, str] = {}
    for event in events:
        if event["kind"] == "page":
            role = "page"
        else:
            (name,) = event["deps"]
            role = "summary:" + name.rsplit(".", 1)[1]
        assert role not in roles, f"{role} looked up twice on one page: {events}"
        roles[role] = event["status"]
    return roles


def _keys(events: list[Event], article_pk: int) -> list[str]:
    return [e["key"] for e in events if f"blog.article.{article_pk}" in e["deps"]]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: Any) -> dict[str, Any]:
    return _flow(tmp_path_factory)


# ---- fragments: nesting, cachesweeper_for, touch


def test_first_view_misses_everything(flow: dict[str, Any]) -> None:
    roles = _roles(flow["pages"]["first"]["events"], flow["article_pk"])
    expected = {"page": "miss", "article": "miss"}
    expected |= {f"comment:{pk}": "miss" for pk in flow["comment_pks"]}
    assert roles == expected


def test_second_view_hits_the_page_and_another_url_the_fragments(flow: dict[str, Any]) -> None:
    # Another visitor gets the stored page: no fragment is even looked up.
    assert _roles(flow["pages"]["second"]["events"], flow["article_pk"]) == {"page": "hit"}
    # Another URL is another page entry; the article fragment hits, so the per-comment
    # fragments inside it are never looked up.
    roles = _roles(flow["pages"]["other_url"]["events"], flow["article_pk"])
    assert roles == {"page": "miss", "article": "hit"}
    first, other = (flow["pages"][p]["events"] for p in ("first", "other_url"))
    assert _keys(first, flow["article_pk"]) == _keys(other, flow["article_pk"])
    # The outer fragment, and the page, depend on everything rendered inside them.
    comments = {f"blog.comment.{pk}" for pk in flow["comment_pks"]}
    (page,) = flow["pages"]["second"]["events"]
    (hit,) = [event for event in other if event["kind"] == "fragment"]
    assert comments <= set(hit["deps"]) and comments <= set(page["deps"])


def test_vote_sweeps_its_comment_and_article_only(flow: dict[str, Any]) -> None:
    page = flow["pages"]["after_vote"]
    roles = _roles(page["events"], flow["article_pk"])
    voted = flow["voted"]
    assert roles.pop("page") == "miss"  # the page depends on what it rendered: swept too
    assert roles.pop("article") != "hit"  # swept via vote -> comment -> article (touch)
    assert roles.pop(f"comment:{voted}") == "miss"
    assert roles == {f"comment:{pk}": "hit" for pk in flow["comment_pks"] if pk != voted}
    # ... and the re-rendered fragment shows the new total.
    before = flow["pages"]["first"]["scores"][str(voted)]
    assert page["scores"][str(voted)] == before + 1


def test_vote_reports_what_it_swept(flow: dict[str, Any]) -> None:
    messages = " ".join(flow["pages"]["after_vote"]["messages"])
    assert "blog.vote." in messages
    assert f"blog.comment.{flow['voted']}" in messages
    assert f"blog.article.{flow['article_pk']}" in messages
    # The sweep, the whole cascade, was one cache round trip; the purge rode on the redirect.
    assert ": 1 cache round trip (set_many \u00d71) in all." in messages
    assert "X-LiteSpeed-Purge: stale, tag=blog.vote." in messages


def test_page_settles_after_the_sweep(flow: dict[str, Any]) -> None:
    # The page after the vote showed a message (not stored); the next one is stored ...
    roles = _roles(flow["pages"]["settled"]["events"], flow["article_pk"])
    assert roles == {"page": "miss", "article": "hit"}
    # ... and served from then on.
    roles = _roles(flow["pages"]["settled_again"]["events"], flow["article_pk"])
    assert roles == {"page": "hit"}


def test_new_comment_renders_only_itself(flow: dict[str, Any]) -> None:
    page = flow["pages"]["after_comment"]
    roles = _roles(page["events"], flow["article_pk"])
    new = flow["new_comment"]
    assert roles.pop("page") == "miss"
    assert roles.pop("article") == "miss"
    assert roles.pop(f"comment:{new}") == "miss"
    assert roles == {f"comment:{pk}": "hit" for pk in flow["comment_pks"]}
    assert "A brand-new comment." in page["html"]


def test_list_depends_on_the_article_and_author_models(flow: dict[str, Any]) -> None:
    pages = flow["pages"]
    assert _roles(pages["list_first"]["events"], flow["article_pk"]) == {"list": "miss"}
    assert _roles(pages["list_second"]["events"], flow["article_pk"]) == {"list": "hit"}
    assert _roles(pages["list_after_edit"]["events"], flow["article_pk"]) == {"list": "miss"}
    assert "Edited title" in pages["list_after_edit"]["html"]
    after_edit = _roles(pages["after_edit"]["events"], flow["article_pk"])
    assert after_edit["article"] != "hit"
    assert "Edited body." in pages["after_edit"]["html"]
    assert "Edited title" in pages["after_edit"]["html"]  # the next view of the article


# ---- round trips


def test_a_cached_page_costs_one_round_trip(flow: dict[str, Any]) -> None:
    pages = flow["pages"]
    # The whole article page - article, comment list, each comment - is one get_many.
    assert pages["second"]["round_trips"] == 1
    assert pages["settled_again"]["round_trips"] == 1
    assert pages["list_second"]["round_trips"] == 1
    assert pages["author_second"]["round_trips"] == 1  # a cache_page hit
    assert "1 cache round trip (get_many \u00d71)" in pages["second"]["html"]
    # A miss costs more, and the footer says so.
    assert pages["first"]["round_trips"] > 1


# ---- cache_page with tags and grace


def test_cache_page_runs_its_view_once_until_a_tag_is_swept(flow: dict[str, Any]) -> None:
    pages = flow["pages"]
    assert pages["author_first"]["author_renders"] == 1
    assert _author_roles(pages["author_first"]["events"])["page"] == "miss"
    assert pages["author_second"]["author_renders"] == 1  # the second GET: no view
    assert _author_roles(pages["author_second"]["events"]) == {"page": "hit"}
    assert pages["author_second"]["headers"]["Age"].isdigit()
    # author.save() swept blog.author.N, one of the page's tags: the view runs again.
    assert pages["author_after_save"]["author_renders"] == 2
    assert _author_roles(pages["author_after_save"]["events"])["page"] == "miss"


def test_cache_page_depends_on_its_tags_and_fragments(flow: dict[str, Any]) -> None:
    (page,) = [e for e in flow["pages"]["author_second"]["events"] if e["kind"] == "page"]
    expected = {f"blog.author.{flow['author_pk']}", "blog.article"}
    expected |= {f"blog.article.{pk}" for pk in flow["author_article_pks"]}
    assert set(page["deps"]) == expected


def test_grace_serves_the_stale_page_while_one_request_renders(flow: dict[str, Any]) -> None:
    pages = flow["pages"]
    renders = pages["author_race_renders"]
    stale = pages["author_race_stale"]
    assert _author_roles(renders["events"])["page"] == "miss"
    assert _author_roles(stale["events"]) == {"page": "stale"}
    assert stale["seconds"] < SLOW_VIEW / 2  # served at once, not after the render
    assert pages["author_settled"]["author_renders"] == 3  # the race ran the view once
    assert _author_roles(pages["author_settled"]["events"]) == {"page": "hit"}


# ---- edge headers


def test_cached_page_carries_its_dependency_names_for_the_edge(flow: dict[str, Any]) -> None:
    for name in ("author_first", "author_second"):  # a miss and a hit alike
        page = flow["pages"][name]
        tags = set(page["headers"]["X-LiteSpeed-Tag"].split(","))
        assert f"blog.author.{flow['author_pk']}" in tags
        assert {f"blog.article.{pk}" for pk in flow["author_article_pks"]} <= tags
        assert page["headers"]["X-LiteSpeed-Cache-Control"] == "public, max-age=300"
        # ... and the footer shows exactly the headers the response carries.
        for header in ("X-LiteSpeed-Tag", "X-LiteSpeed-Cache-Control", "Cache-Control"):
            assert page["footer_headers"][header] == page["headers"][header]
    listing = flow["pages"]["list_second"]
    assert set(listing["headers"]["X-LiteSpeed-Tag"].split(",")) == {"blog.article", "blog.author"}
    assert listing["headers"]["X-LiteSpeed-Cache-Control"] == "public, max-age=60"


# ---- holes: the CSRF tokens of the article page


def test_the_article_page_with_csrf_holes_is_cached(flow: dict[str, Any]) -> None:
    first, second = flow["pages"]["first"], flow["pages"]["second"]
    # The second visitor's page came from the page cache, and its footer says so.
    assert 'Page cache: <span class="status">hit</span>' in second["html"]
    # Each visitor has their own tokens (one per form, each masked afresh), and their
    # own cookie to match.
    tokens = [set(TOKEN.findall(page["html"])) for page in (first, second)]
    assert [len(found) for found in tokens] == [2, 2] and not tokens[0] & tokens[1]
    assert second["cookie_set"]


def test_a_vote_from_the_cached_page_passes_the_csrf_check(flow: dict[str, Any]) -> None:
    assert flow["pages"]["vote_without_token"]["status"] == 403  # the check is on
    assert flow["pages"]["post_vote"]["status"] == 302  # the token from the cached page
    # ... and it swept: see test_vote_sweeps_its_comment_and_article_only.


def test_page_with_filled_holes_is_not_tagged_for_the_edge(flow: dict[str, Any]) -> None:
    page = flow["pages"]["second"]
    assert "X-LiteSpeed-Tag" not in page["headers"]
    assert page["footer_headers"]["X-LiteSpeed-Tag"] is None
    # The footer says why: the holes hold this visitor's token (ESI would share it).
    assert "private" in page["headers"]["Cache-Control"]
    assert "because its Cache-Control says private" in page["html"]


def test_comment_post_purges_the_swept_article(flow: dict[str, Any]) -> None:
    purge = flow["pages"]["post_comment"]["headers"]["X-LiteSpeed-Purge"]
    parts = [part.strip() for part in purge.split(",")]
    assert parts[0] == "stale"
    assert f"tag=blog.article.{flow['article_pk']}" in parts
    assert f"tag=blog.comment.{flow['new_comment']}" in parts
    assert flow["detail_url"] in parts  # the article's URL, from get_absolute_url()


def test_wsgi_application_fills_in_the_footer(flow: dict[str, Any]) -> None:
    page = flow["pages"]["wsgi"]
    assert page["status"] == 200
    assert page["round_trips"] is not None
    assert page["footer_headers"]["X-LiteSpeed-Tag"] == page["headers"]["X-LiteSpeed-Tag"]
    assert int(page["headers"]["Content-Length"]) == len(page["html"].encode())


@pytest.fixture(scope="module")
def toolbar_flow(tmp_path_factory: Any) -> dict[str, Any]:
    pytest.importorskip("debug_toolbar")
    return _flow(tmp_path_factory, "--toolbar-flow", toolbar=True)


def test_debug_toolbar_panel(toolbar_flow: dict[str, Any]) -> None:
    assert toolbar_flow["installed"]
    page = toolbar_flow["page"]
    assert page["status"] == 200
    assert "CacheSweeperPanel" in page["html"]
    assert page["round_trips"] is not None  # the footer is still filled in


def test_pages_showing_the_debug_toolbar_are_not_shared(toolbar_flow: dict[str, Any]) -> None:
    """The toolbar's HTML is one request's own: its panel marks the page private."""
    page = toolbar_flow["page"]
    assert "X-LiteSpeed-Tag" not in page["headers"]
    assert page["headers"]["X-LiteSpeed-Cache-Control"] == "no-cache"
    assert "its Cache-Control says private" in page["html"]


if __name__ == "__main__" and sys.argv[1:] == ["--flow"]:
    result = run_flow()
    print(RESULT_MARKER + json.dumps(result))
elif __name__ == "__main__" and sys.argv[1:] == ["--toolbar-flow"]:
    result = run_toolbar_flow()
    print(RESULT_MARKER + json.dumps(result))


# ---- one environment variable picks the cache

_SHOW_CACHES = """
import json, django
from django.conf import settings
from django.utils.module_loading import import_string
django.setup()
entry = settings.CACHES["default"]
bases = [f"{k.__module__}.{k.__qualname__}" for k in import_string(entry["BACKEND"]).__mro__]
print(json.dumps({"entry": entry, "bases": bases}))
"""


def _caches_with(url: str | None) -> subprocess.CompletedProcess[str]:
    env = _env(Path(os.devnull))
    if url is not None:
        env["CACHESWEEPER_CACHE"] = url
    return subprocess.run(
        [sys.executable, "-c", _SHOW_CACHES],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("url", "django_backend", "location"),
    [
        (None, "django.core.cache.backends.locmem.LocMemCache", "cachesweeper-example"),
        (
            "memcached://10.0.0.5:11212",
            "django.core.cache.backends.memcached.PyMemcacheCache",
            "10.0.0.5:11212",
        ),
        (
            "redis://10.0.0.6:6380/3",
            "django.core.cache.backends.redis.RedisCache",
            "redis://10.0.0.6:6380/3",
        ),
    ],
)
def test_cachesweeper_cache_selects_the_backend(
    url: str | None, django_backend: str, location: str
) -> None:
    done = _caches_with(url)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert django_backend in shown["bases"]  # Django's class, under the footer's counting
    assert shown["entry"]["LOCATION"] == location


def test_an_unknown_cache_url_is_refused() -> None:
    done = _caches_with("memcache://10.0.0.5")
    assert done.returncode != 0
    assert "use memcached://HOST:PORT or redis://HOST:PORT/DB" in done.stderr
