"""The django-debug-toolbar panel: this request's fragments and pages, and the edge headers.

Needs django-debug-toolbar (the ``test`` extra); skipped when it is not installed. The
toolbar is wired with ``override_settings`` here, so the suite's settings need nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, clear_url_caches, include, path

from cachesweeper import cache_page, signals
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
    return HttpResponse(engines["django"].from_string(TEMPLATE).render({"article": article}))


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
    yield seen
    for state, remember in receivers.items():
        getattr(signals, f"fragment_{state}").disconnect(remember)


def our_receivers() -> list[Any]:
    return [
        receiver
        for signal in (signals.fragment_hit, signals.fragment_miss, signals.fragment_stale)
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
    # EdgeMiddleware runs outside the toolbar: the panel shows the headers it will add.
    assert "Edge headers EdgeMiddleware adds after the toolbar" in html
    tags = response["X-Test-Tags"]
    assert {f"testapp.article.{article.pk}", "frontpage"} <= set(tags.split())
    assert f"<td>X-Test-Tags</td><td><code>{tags}</code></td>" in html
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


@needs_toolbar
def test_the_panel_unit(keys: list[tuple[str, str]]) -> None:
    """Driven as the toolbar drives panels: enable, run, disable, generate_stats."""
    article = Article.objects.create(title="Hello")
    request = RequestFactory().get(f"/fragments/?pk={article.pk}")
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

        toolbar = DebugToolbar(request, fragments)
        panel = toolbar.get_panel_by_id("CacheSweeperPanel")
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
    assert panel.nav_subtitle == "0 hits, 2 misses, 0 stale"
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
