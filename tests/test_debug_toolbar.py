"""The django-debug-toolbar panel: this request's fragments and pages, and the edge headers.

Needs django-debug-toolbar (the ``test`` extra); skipped when it is not installed. The
toolbar is wired with ``override_settings`` here, so the suite's settings need nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, clear_url_caches, include, path

from cachesweeper import cache_page, signals
from tests.helpers import calls, reset
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

needs_toolbar = pytest.mark.skipif(
    importlib.util.find_spec("debug_toolbar") is None,
    reason="django-debug-toolbar is not installed (it is in the test extra)",
)

PANEL = "cachesweeper.contrib.debug_toolbar.CacheSweeperPanel"
EDGES = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]
TEMPLATE = (
    "{% load cachesweeper %}<html><body>"
    "{% cachesweeper article 60 %}<h1>{{ article.title }}</h1>{% endcachesweeper %}"
    '{% cachesweeper "frontpage" 60 %}<p>front</p>{% endcachesweeper %}'
    "</body></html>"
)


def fragments(request: HttpRequest) -> HttpResponse:
    article = Article.objects.get(pk=int(request.GET["pk"]))
    if "rename" in request.GET:  # an edit made by this request: swept on save
        article.title = request.GET["rename"]
        article.save()
    return HttpResponse(engines["django"].from_string(TEMPLATE).render({"article": article}))


def own_cache_call(request: HttpRequest) -> HttpResponse:
    """The site's own cache use, on the same alias: not cachesweeper's round trip."""
    caches["default"].get("the-site's-own-key")
    return fragments(request)


@cache_page(60, tags=["pages"])
def cached_page(request: HttpRequest) -> HttpResponse:
    return fragments(request)


# ROOT_URLCONF for these tests; filled in once debug_toolbar is an installed app.
urlpatterns: list[URLPattern | URLResolver] = []


def show_toolbar(request: HttpRequest) -> bool:
    return True


@pytest.fixture
def toolbar(cache_backend: str) -> Iterator[None]:
    """The toolbar with only our panel, inside EdgeMiddleware, panels rendered inline."""
    # STATIC_URL first: the app registry is repopulated (and the toolbar's app looks at
    # static files storage) before the other overrides of the same block apply.
    with (
        override_settings(STATIC_URL="/static/"),
        override_settings(
            DEBUG=True,
            INSTALLED_APPS=[
                *settings.INSTALLED_APPS,
                "django.contrib.staticfiles",
                "debug_toolbar",
            ],
            MIDDLEWARE=[
                "cachesweeper.middleware.EdgeMiddleware",
                "debug_toolbar.middleware.DebugToolbarMiddleware",
                *settings.MIDDLEWARE,
            ],
            ROOT_URLCONF=__name__,
            DEBUG_TOOLBAR_PANELS=[PANEL],
            DEBUG_TOOLBAR_CONFIG={
                "SHOW_TOOLBAR_CALLBACK": f"{__name__}.show_toolbar",
                "RENDER_PANELS": True,
                "IS_RUNNING_TESTS": False,
            },
            CACHESWEEPER={"EDGES": EDGES},
        ),
    ):
        urlpatterns[:] = [
            path("fragments/", fragments),
            path("own-cache-call/", own_cache_call),
            path("page/", cached_page),
            path("__debug__/", include("debug_toolbar.urls")),
        ]
        clear_url_caches()
        try:
            yield
        finally:
            urlpatterns.clear()
            clear_url_caches()


@pytest.fixture
def keys() -> Iterator[list[tuple[str, str]]]:
    """``(state, key)`` of everything served, from the signals, to compare with the panel."""
    seen: list[tuple[str, str]] = []
    receivers = {}
    for state in ("hit", "miss", "stale"):

        def remember(sender: Any, key: str, state: str = state, **kwargs: Any) -> None:
            seen.append((state, key))

        receivers[state] = remember
        getattr(signals, f"fragment_{state}").connect(remember)
        getattr(signals, f"page_{state}").connect(remember)
    yield seen
    for state, remember in receivers.items():
        getattr(signals, f"fragment_{state}").disconnect(remember)
        getattr(signals, f"page_{state}").disconnect(remember)


def our_receivers() -> list[Any]:
    return [
        receiver
        for signal in (
            *(signals.fragment_hit, signals.fragment_miss, signals.fragment_stale),
            *(signals.page_hit, signals.page_miss, signals.page_stale),
        )
        for receiver in signal.receivers
        if "cachesweeper.toolbar" in str(receiver[0])
    ]


@needs_toolbar
@pytest.mark.usefixtures("toolbar")
def test_the_panel_lists_the_fragments_of_the_request(
    client: Client, keys: list[tuple[str, str]]
) -> None:
    article = Article.objects.create(title="Hello")
    url = f"/fragments/?pk={article.pk}"

    first = client.get(url).content.decode()
    assert "2 misses" in first
    keys.clear()

    response = client.get(url)
    html = response.content.decode()

    assert "<h1>Hello</h1>" in html
    assert "cachesweeper" in html
    assert "2 hits, 0 misses, 0 stale" in html
    for _, key in keys:
        assert key in html  # the entry keys, for `manage.py cachesweeper inspect --key`
    assert len(keys) == 2
    assert f"testapp.article.{article.pk}" in html
    assert "frontpage" in html
    # EdgeMiddleware runs outside the toolbar: the panel shows the headers it adds to
    # this page for visitors without the toolbar. This one, with the toolbar, is private.
    assert "Edge headers EdgeMiddleware adds to this page without the toolbar" in html
    [tags] = re.findall(r"<td>X-Test-Tags</td><td><code>([^<]*)</code></td>", html)
    assert {f"testapp.article.{article.pk}", "frontpage"} <= set(tags.split())
    assert "X-Test-Tags" not in response
    assert "private" in response["Cache-Control"]
    assert "Yes: every visitor like this one gets the same page." in html
    assert our_receivers() == []  # disconnected once the request is over


@needs_toolbar
@pytest.mark.usefixtures("toolbar")
def test_a_cached_page_is_one_page_hit_with_its_dependencies(
    client: Client, keys: list[tuple[str, str]]
) -> None:
    article = Article.objects.create(title="Hello")
    url = f"/page/?pk={article.pk}"

    first = client.get(url).content.decode()
    assert "0 hits, 3 misses, 0 stale" in first  # the page and its two fragments
    keys.clear()

    html = client.get(url).content.decode()

    assert "1 hits, 0 misses, 0 stale" in html
    [(state, key)] = keys
    assert (state, key.split(":")[-2]) == ("hit", "p")
    row = html.split(key)[0].rsplit("<tr", 1)[1]
    assert "<td>hit</td>" in row and "<td>page</td>" in row
    for name in ("pages", "frontpage", f"testapp.article.{article.pk}"):
        assert f"<code>{name}</code>" in row


@contextmanager
def panel_of(request: HttpRequest, view: Any) -> Iterator[tuple[Any, Any]]:
    """A toolbar for ``request`` holding only cachesweeper's panel, as the toolbar builds it."""
    # STATIC_URL first: the toolbar's app looks at static files storage when it loads.
    with (
        override_settings(STATIC_URL="/static/"),
        override_settings(
            INSTALLED_APPS=[*settings.INSTALLED_APPS, "debug_toolbar"],
            DEBUG_TOOLBAR_PANELS=[PANEL],
            DEBUG_TOOLBAR_CONFIG={"IS_RUNNING_TESTS": False},
        ),
    ):
        from debug_toolbar.toolbar import DebugToolbar

        toolbar = DebugToolbar(request, view)
        yield toolbar, toolbar.get_panel_by_id("CacheSweeperPanel")


@needs_toolbar
def test_the_panel_unit(keys: list[tuple[str, str]]) -> None:
    """Driven as the toolbar drives panels: enable, run, disable, generate_stats."""
    article = Article.objects.create(title="Hello")
    request = RequestFactory().get(f"/fragments/?pk={article.pk}")
    with panel_of(request, fragments) as (toolbar, panel):
        assert panel.title == "cachesweeper"
        panel.enable_instrumentation()
        panel.enable_instrumentation()  # idempotent, as the toolbar requires
        try:
            response = toolbar.process_request(request)
            # Served outside this request (another thread): not this panel's business.
            thread = threading.Thread(target=fragments, args=(request,))
            thread.start()
            thread.join()
        finally:
            panel.disable_instrumentation()
            panel.disable_instrumentation()
        panel.generate_stats(request, response)
        stats = panel.get_stats()
        html = panel.content

    assert our_receivers() == []
    assert stats["counts"] == {"hit": 0, "miss": 2, "stale": 0}
    assert stats["total"] == 2
    assert [(r["state"], r["key"]) for r in stats["records"]] == keys[:2]
    assert [r["kind"] for r in stats["records"]] == ["fragment", "fragment"]
    assert stats["records"][0]["dependencies"] == [f"testapp.article.{article.pk}"]
    assert stats["records"][1]["dependencies"] == ["frontpage"]
    assert stats["predicted_edge_headers"] == []  # no EdgeMiddleware around, no edges
    # Missing token for "frontpage" (article's was made by the save's sweep): one add.
    assert stats["round_trips_by_call"] == [("add", 1), ("get_many", 2), ("set_many", 2)]
    assert panel.nav_subtitle == "0 hits, 2 misses, 0 stale, 5 round trips"
    assert "No cached fragment" not in html
    assert keys[0][1] in html


def test_cachesweeper_never_imports_debug_toolbar() -> None:
    code = (
        "import django, sys; django.setup(); import cachesweeper, cachesweeper.stats; "
        "import cachesweeper.management.commands.cachesweeper, cachesweeper.contrib; "
        "assert 'debug_toolbar' not in sys.modules, 'debug_toolbar was imported'"
    )
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(settings.BASE_DIR)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_panel_module_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "cachesweeper.contrib.debug_toolbar", raising=False)
    monkeypatch.setitem(sys.modules, "debug_toolbar", None)
    monkeypatch.setitem(sys.modules, "debug_toolbar.panels", None)

    with pytest.raises(ImportError, match="pip install django-debug-toolbar"):
        importlib.import_module("cachesweeper.contrib.debug_toolbar")


def summary(html: str) -> list[str]:
    """The cells of the panel's summary row: served, hits, misses, stale, trips, ms, saved."""
    row = html.split("<h4>Summary</h4>", 1)[1].split("<tbody>", 1)[1].split("</tr>", 1)[0]
    return [cell.split("</td>")[0].strip() for cell in row.split("<td>")[1:]]


@needs_toolbar
@pytest.mark.usefixtures("toolbar")
def test_round_trips_are_the_cache_calls_cachesweeper_made(client: Client) -> None:
    article = Article.objects.create(title="Hello")
    url = f"/own-cache-call/?pk={article.pk}"
    client.get(url)
    reset()

    html = client.get(url).content.decode()

    # The backend logged the site's own get and one get_many per fragment hit.
    assert sorted(calls()) == ["get", "get_many", "get_many"]
    assert summary(html)[4] == "2 (2 get_many)"
    assert "2 hits, 0 misses, 0 stale, 2 round trips" in html


@needs_toolbar
@pytest.mark.usefixtures("toolbar")
def test_a_sweep_in_the_request_is_one_more_round_trip(client: Client) -> None:
    article = Article.objects.create(title="Hello")
    client.get(f"/fragments/?pk={article.pk}")
    reset()

    html = client.get(f"/fragments/?pk={article.pk}&rename=Bye").content.decode()

    assert "<h1>Bye</h1>" in html
    logged = Counter(calls())
    assert logged["set_many"] >= 1  # the save's sweep: fresh tokens in one set_many
    by_call = ", ".join(f"{count} {name}" for name, count in sorted(logged.items()))
    assert summary(html)[4] == f"{logged.total()} ({by_call})"


class Slow:
    """Renders as text after sleeping, the next of ``delays`` each time: what a hit saves."""

    def __init__(self, *delays: float) -> None:
        self.delays = list(delays)

    def __str__(self) -> str:
        import time

        delay = self.delays.pop(0)
        time.sleep(delay)
        return f"slept {delay}"


SLOW = (
    "{% load cachesweeper %}"
    '{% cachesweeper "slow" 60 %}{{ slow }}{% endcachesweeper %}'
    '{% cachesweeper_for tag in tags 60 "item" %}{{ items }};{% endcachesweeper_for %}'
)


def slow_view(request: HttpRequest) -> HttpResponse:
    context = {"slow": Slow(0.1), "tags": ["first", "second"], "items": Slow(0.01, 0.2)}
    return HttpResponse(engines["django"].from_string(SLOW).render(context))


def watched(view: Any) -> dict[str, Any]:
    """One request through the panel, as the toolbar drives it; the panel's stats."""
    request = RequestFactory().get("/slow/")
    with panel_of(request, view) as (toolbar, panel):
        panel.enable_instrumentation()
        try:
            response = toolbar.process_request(request)
        finally:
            panel.disable_instrumentation()
        panel.generate_stats(request, response)
        stats: dict[str, Any] = panel.get_stats()
        stats["html"] = panel.content
        return stats


@needs_toolbar
@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
def test_time_saved_is_what_building_the_entry_took(cache_backend: str) -> None:
    built = watched(slow_view)
    slow, first, second = built["records"]
    assert [r["state"] for r in built["records"]] == ["miss"] * 3
    assert slow["built_ms"] >= 100
    # Items of one loop are stored together; each is timed to where the next began.
    assert 10 <= first["built_ms"] < 150 and second["built_ms"] >= 200

    served = watched(slow_view)

    assert [r["state"] for r in served["records"]] == ["hit"] * 3
    assert [r["saved_ms"] for r in served["records"]] == [
        slow["built_ms"],
        first["built_ms"],
        second["built_ms"],
    ]
    assert served["saved_ms"] == pytest.approx(sum(r["built_ms"] for r in built["records"]))
    assert served["saved_unknown"] == 0
    assert f"saved {second['built_ms']:.2f} ms" in served["html"]


@needs_toolbar
@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
def test_time_saved_is_unknown_for_entries_built_unwatched(cache_backend: str) -> None:
    from cachesweeper.contrib.debug_toolbar import _build_times

    _build_times.clear()  # what earlier tests' panels measured for the same keys
    slow_view(RequestFactory().get("/slow/"))  # built without the toolbar

    served = watched(slow_view)

    assert [r["saved_ms"] for r in served["records"]] == [None, None, None]
    assert served["saved_ms"] == 0 and served["saved_unknown"] == 3
    assert "(3 serves unknown)" in served["html"]


@needs_toolbar
@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
def test_reads_that_could_skip_the_cache_object_are_counted(
    cache_backend: str, memcached_server: Any
) -> None:
    """A stock PyMemcacheCache with one server, whose hits read its client directly (reads.py).

    Once the panel wraps the cache object, its reads go through the wrapper, even
    though the fast reader was chosen before (the first render is unwatched).
    """
    from tests.servers import cache_settings

    stock = cache_settings("memcached", memcached_server.location, counting=False)
    with override_settings(CACHES={"default": stock}):
        caches["default"].clear()
        slow_view(RequestFactory().get("/slow/"))
        slow_view(RequestFactory().get("/slow/"))  # a hit, read past the cache object
        served = watched(slow_view)
    assert [r["state"] for r in served["records"]] == ["hit"] * 3
    assert served["round_trips_by_call"] == [("get_many", 2)]
