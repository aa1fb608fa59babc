"""The site-wide ``PageCacheMiddleware``: URL rules in settings, same safety rules."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import AsyncClient, Client, override_settings

import cachesweeper
from tests.testapp import views
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cachesweeper.middleware.PageCacheMiddleware",
]


@pytest.fixture(autouse=True)
def _site_wide() -> Iterator[None]:
    views.CALLS.clear()
    with override_settings(MIDDLEWARE=MIDDLEWARE, CACHESWEEPER={"PAGE_RULES": [("/wsgi", 60, 0)]}):
        yield


def comment() -> Comment:
    return Comment.objects.create(article=Article.objects.create(title="a"), text="before")


def test_matching_pages_are_cached_until_swept(client: Client) -> None:
    target = comment()
    url = f"/wsgi/fragment/{target.pk}/"
    client.get(url)
    client.get(url)
    assert views.CALLS["fragment_plain"] == 1

    target.text = "after"
    target.save()

    assert b"after" in client.get(url).content
    assert views.CALLS["fragment_plain"] == 2


def test_regex_rule_with_tags(client: Client) -> None:
    url = f"/wsgi/fragment/{comment().pk}/"
    rules = [(re.compile(r"^/wsgi/fragment/\d+/$"), 60, 0, ["fragments"])]
    with override_settings(CACHESWEEPER={"PAGE_RULES": rules}):
        client.get(url)
        client.get(url)
        assert views.CALLS["fragment_plain"] == 1
        cachesweeper.invalidate_tag("fragments")
        client.get(url)
        assert views.CALLS["fragment_plain"] == 2


def test_rules_are_checked_by_the_system_checks() -> None:
    from django.core import checks

    with override_settings(CACHESWEEPER={"PAGE_RULES": [("/blog", -5, 0)]}):
        found = checks.run_checks(tags=[checks.Tags.caches])
    assert [m.id for m in found if str(m.id).startswith("cachesweeper")] == ["cachesweeper.E003"]
    assert "ttl must be seconds" in found[-1].msg


def test_urls_outside_the_rules_are_not_cached(client: Client) -> None:
    client.get("/status/500/")
    client.get("/status/500/")
    assert views.CALLS["status500"] == 2


def test_post_is_never_cached(client: Client) -> None:
    target = comment()
    url = f"/wsgi/fragment/{target.pk}/"
    client.get(url)
    client.post(url)
    client.post(url)
    assert views.CALLS["fragment_plain"] == 3


def test_async_stack() -> None:
    from asgiref.sync import async_to_sync

    url = f"/wsgi/fragment/{comment().pk}/"

    async def twice() -> tuple[bytes, bytes]:
        client = AsyncClient()
        first = await client.get(url)
        second = await client.get(url)
        return first.content, second.content

    first, second = async_to_sync(twice)()
    assert first == second and b"before" in first
    assert views.CALLS["fragment_plain"] == 1
