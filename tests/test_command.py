"""``manage.py cachesweeper``: invalidate, purge, stats and inspect, errors included."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

import cachesweeper
from cachesweeper import pages, signals, stats
from cachesweeper.edges import queue
from tests.edges.recording import RecordingEdge
from tests.helpers import Counter, reloaded, render
from tests.testapp import views
from tests.testapp.models import Article, Bistro, Page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

EDGES = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]
ON_ARTICLE = (
    "{% cachesweeper article 60 %}{{ article.title }} {{ counter.next }}{% endcachesweeper %}"
)
ON_MODEL = "{% cachesweeper model 60 %}model {{ counter.next }}{% endcachesweeper %}"
ON_TAG = '{% cachesweeper "frontpage" 60 %}front {{ counter.next }}{% endcachesweeper %}'


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    RecordingEdge.reset()
    views.CALLS.clear()
    yield
    RecordingEdge.reset()


@pytest.fixture
def keys() -> Iterator[list[str]]:
    """Entry keys of every fragment or page served, as the signals report them."""
    seen: list[str] = []

    def remember(sender: Any, key: str, **kwargs: Any) -> None:
        seen.append(key)

    served = (signals.fragment_hit, signals.fragment_miss, signals.fragment_stale)
    served += (signals.page_hit, signals.page_miss, signals.page_stale)
    for signal in served:
        signal.connect(remember)
    yield seen
    for signal in served:
        signal.disconnect(remember)


def run(*args: str) -> str:
    out = StringIO()
    call_command("cachesweeper", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_both(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("cachesweeper", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# -- invalidate -------------------------------------------------------------------------


def test_invalidate_instances_makes_their_fragments_render_again() -> None:
    first, second, third = (Article.objects.create(title=t) for t in ("one", "two", "three"))
    counter = Counter()
    for article in (first, second, third):
        render(ON_ARTICLE, article=article, counter=counter)
    assert render(ON_ARTICLE, article=first, counter=counter) == "one 1"

    output = run("invalidate", "testapp.Article", str(first.pk), str(third.pk))

    assert output.strip() == (
        f"Invalidated testapp.article.{first.pk}, testapp.article.{third.pk}"
    )
    first, third = reloaded(first), reloaded(third)
    assert render(ON_ARTICLE, article=first, counter=counter) == "one 4"
    assert render(ON_ARTICLE, article=second, counter=counter) == "two 2"  # untouched
    assert render(ON_ARTICLE, article=third, counter=counter) == "three 5"
    assert render(ON_ARTICLE, article=first, counter=counter) == "one 4"  # cached again


def test_invalidate_a_model_sweeps_the_model_level_dependency_only() -> None:
    article = Article.objects.create(title="a")
    counter = Counter()
    assert render(ON_MODEL, model=Article, counter=counter) == "model 1"
    assert render(ON_ARTICLE, article=article, counter=counter) == "a 2"

    assert run("invalidate", "testapp.article").strip() == "Invalidated testapp.article"

    assert render(ON_MODEL, model=Article, counter=counter) == "model 3"
    assert render(ON_ARTICLE, article=article, counter=counter) == "a 2"


def test_invalidate_names_every_level_of_a_multi_table_child() -> None:
    bistro = Bistro.objects.create(name="b")
    pk = bistro.pk
    assert run("invalidate", "testapp.bistro", str(pk)).strip() == (
        f"Invalidated testapp.bistro.{pk}, testapp.restaurant.{pk}, testapp.place.{pk}"
    )
    assert run("invalidate", "testapp.bistro").strip() == (
        "Invalidated testapp.bistro, testapp.restaurant, testapp.place"
    )


def test_invalidate_tags() -> None:
    counter = Counter()
    assert render(ON_TAG, counter=counter) == "front 1"
    assert render(ON_TAG, counter=counter) == "front 1"

    assert run("invalidate", "--tag", "sidebar", "frontpage").strip() == (
        "Invalidated sidebar, frontpage"
    )

    assert render(ON_TAG, counter=counter) == "front 2"


def test_invalidate_hands_purges_to_the_edges_and_waits_for_them() -> None:
    article = Article.objects.create(title="a")
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        assert queue.purges.flush(5)
        RecordingEdge.reset()

        output = run("invalidate", "testapp.Article", str(article.pk))

    # The article, and the lists it is in (articles without an author).
    assert RecordingEdge.names() == {f"testapp.article.{article.pk}", "testapp.article.author="}
    assert RecordingEdge.urls() == {(None, f"/article/{article.pk}/")}
    assert "Edge purges: 3 delivered, 0 failed attempt(s), 0 pending" in output  # batches of 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("invalidate", "nope.Thing"), "unknown model 'nope.Thing'"),
        (("invalidate", "testapp.Nothing", "1"), "unknown model 'testapp.Nothing'"),
        (
            ("invalidate", "testapp"),
            "'testapp' is not app_label.Model: write it like blog.Article",
        ),
        (("invalidate", "testapp.Article", "999999"), "has no row with pk 999999"),
        (("invalidate", "testapp.Article", "abc"), "bad pk for testapp.Article"),
        (("invalidate", "--tag", ""), "bad tag ''"),
        (("invalidate", "--tag", "   "), "bad tag"),
        (("invalidate", "--tag", "front\npage"), "control characters"),
        (("invalidate",), "needs app_label.Model"),
        (("invalidate", "testapp.Article", "--tag", "x"), "not both"),
        ((), "the following arguments are required: SUBCOMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
    ids=[
        "unknown-app",
        "unknown-model",
        "not-a-label",
        "unknown-pk",
        "bad-pk",
        "empty-tag",
        "blank-tag",
        "control-tag",
        "nothing",
        "model-and-tag",
        "no-subcommand",
        "unknown-subcommand",
    ],
)
def test_errors_are_command_errors(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)


@pytest.mark.parametrize("label", ["Article", "article", "blog.testapp.Article"])
def test_a_model_without_its_app_label_shows_the_form_to_write(label: str) -> None:
    with pytest.raises(CommandError) as raised:
        run("invalidate", label, "1")
    message = str(raised.value)
    assert f"{label!r} is not app_label.Model: write testapp.Article" in message
    assert "unpack" not in message


def test_inspect_of_a_missing_row_does_not_speak_of_invalidating() -> None:
    with pytest.raises(CommandError) as raised:
        run("inspect", "--model", "testapp.Article", "999999")
    message = str(raised.value)
    assert "testapp.Article has no row with pk 999999" in message
    assert "invalidat" not in message and "nothing to inspect" in message


def test_a_missing_pk_invalidates_nothing() -> None:
    article = Article.objects.create(title="a")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)

    with pytest.raises(CommandError, match="nothing was invalidated"):
        run("invalidate", "testapp.Article", str(article.pk), "999999")

    assert render(ON_ARTICLE, article=article, counter=counter) == "a 1"


# -- purge ------------------------------------------------------------------------------


def test_purge_urls_and_full_urls_with_their_host() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        output = run("purge", "--url", "/a/", "/b/?page=2", "https://example.com/c/")

    assert RecordingEdge.urls() == {
        (None, "/a/"),
        (None, "/b/?page=2"),
        ("example.com", "/c/"),
    }
    assert "Purging 3 URL(s) on RecordingEdge" in output
    assert "3 delivered, 0 failed attempt(s), 0 pending" in output


def test_purge_all() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        output = run("purge", "--all")

    assert [batch.everything for batch in RecordingEdge.received] == [True]
    assert "Purging everything on RecordingEdge" in output
    assert "1 delivered" in output


def test_purge_needs_configured_edges() -> None:
    with pytest.raises(CommandError, match="no edges configured"):
        run("purge", "--all")


def test_purge_needs_urls_or_all() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        with pytest.raises(CommandError, match="one of the arguments --url --all"):
            run("purge")
        with pytest.raises(CommandError, match="not a URL or a path"):
            run("purge", "--url", "relative/path")
        with pytest.raises(CommandError, match="not an http"):
            run("purge", "--url", "ftp://example.com/x")


def test_an_undelivered_purge_is_an_error() -> None:
    RecordingEdge.reset(failures=10**6)  # unreachable
    try:
        with (
            override_settings(CACHESWEEPER={"EDGES": EDGES}),
            pytest.raises(CommandError, match=r"not delivered within 0\.3s"),
        ):
            run("purge", "--url", "/a/", "--timeout", "0.3")
    finally:
        RecordingEdge.reset()
        assert queue.purges.flush(10)  # leave nothing behind for other tests


def test_request_bound_edges_are_reported() -> None:
    edges = [{"BACKEND": "cachesweeper.edges.LiteSpeed"}]
    with override_settings(CACHESWEEPER={"EDGES": edges}):
        with pytest.raises(CommandError, match="no configured edge can be purged"):
            run("purge", "--all")
        out, err = run_both("invalidate", "--tag", "frontpage")
    assert "Invalidated frontpage" in out
    assert "LiteSpeed: purges ride on the responses" in err


# -- stats ------------------------------------------------------------------------------


def test_stats_prints_this_process_counters() -> None:
    article = Article.objects.create(title="a")
    stats.reset()
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)
    render(ON_ARTICLE, article=article, counter=counter)
    cachesweeper.invalidate_tag("x", "y")

    output = run("stats")

    assert "counters of this process" in output
    assert "hits 1, misses 1, stale 0, hit ratio 50.0%" in output
    assert "1 sweeps, 2 names bumped, largest fan-out 2" in output
    assert "pending 0" in output


def test_stats_json() -> None:
    stats.reset()
    cachesweeper.invalidate_tag("x")

    data = json.loads(run("stats", "--json"))

    assert data["sweeps"] == 1
    assert data["names_swept"] == 1
    assert data["purges_pending"] == 0
    assert set(data) == set(stats.snapshot())


# -- inspect ----------------------------------------------------------------------------


def test_inspect_a_fragment_key(keys: list[str]) -> None:
    article = Article.objects.create(title="a")
    render(ON_ARTICLE, article=article, counter=Counter())
    key = keys[-1]

    fresh = run("inspect", "--key", key)
    assert f"key            {key}" in fresh
    assert "fragment: " in fresh
    assert f"testapp.article.{article.pk}  counter" in fresh
    assert "unchanged" in fresh
    assert "fresh until" in fresh
    assert "state          fresh" in fresh

    cachesweeper.invalidate_cache_for(article)
    stale = run("inspect", "--fragment", key)
    assert f"testapp.article.{article.pk}  counter" in stale
    assert " UTC" in stale.split("swept at ")[1].splitlines()[0]
    assert f"state          stale: tokens moved (testapp.article.{article.pk})" in stale


def test_inspect_a_fragment_with_an_attribute_token(keys: list[str]) -> None:
    page = Page.objects.create(title="p")
    source = "{% cachesweeper page None %}{{ page.title }}{% endcachesweeper %}"
    render(source, page=page)

    fresh = run("inspect", "--key", keys[-1])
    assert f"testapp.page.{page.pk}  attribute" in fresh
    assert "fresh until    no expiry" in fresh
    assert "state          fresh" in fresh

    page.title = "changed"
    page.save()  # moves updated_at
    stale = run("inspect", "--key", keys[-1])
    assert "changed" in stale
    assert "state          stale: tokens moved" in stale


def test_inspect_a_dependency_shows_its_token_and_last_sweep() -> None:
    article = Article.objects.create(title="a")  # the save's sweep sets a fresh token
    name = f"testapp.article.{article.pk}"

    swept = run("inspect", "--model", "testapp.Article", str(article.pk))
    assert f"dependency     {name} (also its edge tag)" in swept
    found = re.search(r"token          counter (\d+)", swept)
    assert found is not None
    token = int(found.group(1))
    assert "last swept     " in swept and "s ago)" in swept

    cachesweeper.invalidate_cache_for(article)
    again = run("inspect", "--model", "testapp.Article", str(article.pk))
    assert f"token          counter {token}" not in again  # the sweep replaced it
    assert "last swept     " in again


def test_inspect_a_dependency_never_swept_nor_read() -> None:
    output = run("inspect", "--tag", "never-used")
    assert "dependency     never-used" in output
    assert "none in the version cache" in output and "last swept     unknown" in output

    render('{% cachesweeper "never-used" 60 %}x{% endcachesweeper %}')  # creates the counter
    created = run("inspect", "--tag", "never-used")
    assert "token          counter " in created
    assert "last swept     not since the counter was created at " in created

    cachesweeper.invalidate_tag("never-used")
    assert "last swept     not since" not in run("inspect", "--tag", "never-used")


def test_inspect_the_model_level_dependency_and_several_tags() -> None:
    cachesweeper.invalidate_model(Article)
    assert "dependency     testapp.article (also" in run("inspect", "--model", "testapp.article")
    output = run("inspect", "--tag", "front page", "side")
    assert "dependency     front%20page" in output and "dependency     side" in output


def test_inspect_an_attribute_versioned_instance() -> None:
    page = Page.objects.create(title="p")
    output = run("inspect", "--model", "testapp.Page", str(page.pk))
    assert f"dependency     testapp.page.{page.pk}" in output
    assert f"attribute updated_at = {page.updated_at!r}" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "testapp.Nope"), "unknown model"),
        (("--model", "testapp.Article", "999999"), "no row with pk 999999"),
        (("--tag", "bad\ntag"), "control characters"),
        (("--key", "cs:f:0", "12"), "primary keys go with --model"),
    ],
)
def test_inspect_a_dependency_errors(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("inspect", *args)


def test_inspect_an_unknown_key() -> None:
    output = run("inspect", "--key", "cs:f:0000")
    assert "entry          none" in output


def test_inspect_a_url_finds_the_key_the_page_cache_uses(client: Client, keys: list[str]) -> None:
    client.get("/tagged/")
    page_key = keys[-1]

    fresh = run("inspect", "--url", "/tagged/")
    assert "Page cache (cache_page on tests.testapp.views.tagged)" in fresh
    assert f"key            {page_key}" in fresh
    assert "page: status 200" in fresh
    assert "frontpage  counter" in fresh
    assert "state          fresh" in fresh
    assert run("inspect", "--url", "http://testserver/tagged/") == fresh

    cachesweeper.invalidate_tag("frontpage")
    stale = run("inspect", "--url", "/tagged/")
    assert "state          stale: tokens moved (frontpage)" in stale


def test_inspect_a_url_whose_tags_come_from_the_url(client: Client, keys: list[str]) -> None:
    article = Article.objects.create(title="a")
    client.get(f"/article/{article.pk}/?b=2&a=1")

    output = run("inspect", "--url", f"/article/{article.pk}/?a=1&b=2")

    assert f"key            {keys[-1]}" in output
    assert "state          fresh" in output


def test_inspect_a_class_based_view(client: Client, keys: list[str]) -> None:
    client.get("/class/")

    output = run("inspect", "--url", "/class/")

    assert f"key            {keys[-1]}" in output
    assert "cbv  counter" in output


def test_inspect_a_url_that_varies(
    client: Client, keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "_vary_known", {})  # as in a process that never saw the page
    client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="fr")
    client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="fr")  # a hit reports the variant's key

    output = run("inspect", "--url", "/vary-language/", "--header", "Accept-Language: fr")

    assert "varies on Accept-Language" in output
    assert f"key            {keys[-1]}" in output
    assert "state          fresh" in output
    other = run("inspect", "--url", "/vary-language/", "--header", "Accept-Language: de")
    assert "entry          none" in other
    # The first miss reported the page's plain key: it holds a pointer to the variants.
    assert "a Vary pointer: the page varies on Accept-Language" in run("inspect", "--key", keys[0])


def test_inspect_a_url_under_a_page_rule(client: Client, keys: list[str]) -> None:
    middleware = [*views_middleware(), "cachesweeper.middleware.PageCacheMiddleware"]
    with override_settings(
        CACHESWEEPER={"PAGE_RULES": [("/plain/", 60, 0)]}, MIDDLEWARE=middleware
    ):
        client.get("/plain/")
        output = run("inspect", "--url", "/plain/")

    assert "Page cache (PAGE_RULES '/plain/')" in output
    assert "Page cache (cache_page on tests.testapp.views.plain)" in output
    assert f"key            {keys[0]}" in output  # the middleware's entry, outermost
    assert f"key            {keys[1]}" in output  # the view's own


def test_inspect_a_url_that_is_not_page_cached() -> None:
    assert "is not page-cached" in run("inspect", "--url", "/nowhere/")


def test_inspect_errors() -> None:
    with pytest.raises(CommandError, match="one of the arguments --url --key/--fragment"):
        run("inspect")
    with pytest.raises(CommandError, match="Invalid HTTP_HOST header"):
        run("inspect", "--url", "http://evil.example/tagged/")
    with pytest.raises(CommandError, match="--header takes 'Name: value'"):
        run("inspect", "--url", "/tagged/", "--header", "nonsense")
    with pytest.raises(CommandError, match="anonymous visitors"):
        run("inspect", "--url", "/tagged/", "--header", "Cookie: sessionid=x")
    with pytest.raises(CommandError, match="unknown cache alias 'nope'"):
        run("inspect", "--key", "cs:f:0", "--cache", "nope")


def views_middleware() -> list[str]:
    from django.conf import settings

    return list(settings.MIDDLEWARE)


def test_inspect_a_url_says_why_its_page_was_not_stored() -> None:
    output = run("inspect", "--url", "/csrf/")
    assert "entry          none" in output
    assert "not stored: it uses a CSRF token" in output


def test_inspect_a_url_not_stored_yet_asks_it_once() -> None:
    first = run("inspect", "--url", "/tagged/")
    assert "shareable; inspect again to see its entry" in first
    assert "state          fresh" in run("inspect", "--url", "/tagged/")
