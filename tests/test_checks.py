"""System checks say what is wrong with the settings and how to fix it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
REDIS = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}


def messages(**cachesweeper: Any) -> list[checks.CheckMessage]:
    with override_settings(CACHESWEEPER=cachesweeper, DEBUG=True):
        found = checks.run_checks(tags=[checks.Tags.caches])
    return [message for message in found if message.id and message.id.startswith("cachesweeper")]


def ids(found: list[checks.CheckMessage]) -> list[str]:
    return [str(message.id) for message in found]


def test_defaults_pass_in_debug() -> None:
    assert messages() == []


def test_unknown_cache_alias_is_an_error_with_the_choices() -> None:
    (error,) = messages(CACHE="fragments")
    assert error.id == "cachesweeper.E001"
    assert "'fragments'" in error.msg and "default" in str(error.hint)


def test_unknown_version_cache_alias() -> None:
    assert ids(messages(VERSION_CACHE="versions")) == ["cachesweeper.E001"]


@pytest.mark.parametrize(
    "settings",
    [
        {"GRACE": -1},
        {"GRACE": "30"},
        {"CACHE": ""},
        {"USING": 3},
        {"TIMEOUT": 5},
    ],
)
def test_settings_of_the_wrong_type(settings: dict[str, Any]) -> None:
    assert ids(messages(**settings)) == ["cachesweeper.E002"]


def test_not_a_dict() -> None:
    with override_settings(CACHESWEEPER=["CACHE"]):
        found = checks.run_checks(tags=[checks.Tags.caches])
    assert "cachesweeper.E002" in ids(found)


def test_per_process_cache_in_production_warns() -> None:
    with override_settings(CACHES={"default": LOCMEM}):
        found = _production_messages()
    assert ids(found) == ["cachesweeper.W001", "cachesweeper.W001"]
    assert "several worker processes" in found[0].msg
    assert "Redis" in str(found[0].hint)


def test_shared_cache_in_production_passes() -> None:
    with override_settings(CACHES={"default": REDIS}):
        assert _production_messages() == []


def _production_messages() -> list[checks.CheckMessage]:
    with override_settings(DEBUG=False):
        found = checks.run_checks(tags=[checks.Tags.caches])
    return [message for message in found if str(message.id).startswith("cachesweeper")]


def test_unknown_edge_backend() -> None:
    edges = [{"BACKEND": "cachesweeper.edges.Nope"}]
    assert ids(messages(EDGES=edges)) == ["cachesweeper.E004"]


def test_unknown_edge_option_names_the_known_ones() -> None:
    edges = [{"BACKEND": "cachesweeper.edges.LiteSpeed", "OPTIONS": {"stael": True}}]
    (error,) = messages(EDGES=edges)
    assert error.id == "cachesweeper.E004" and "stael" in error.msg and "stale" in error.msg


def test_edges_without_edge_middleware_warn() -> None:
    edges = [{"BACKEND": "cachesweeper.edges.LiteSpeed"}]
    with override_settings(MIDDLEWARE=[]):
        assert ids(messages(EDGES=edges)) == ["cachesweeper.W002"]


def test_middleware_order() -> None:
    wrong = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "cachesweeper.middleware.EdgeMiddleware",
        "cachesweeper.middleware.PageCacheMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    with override_settings(MIDDLEWARE=wrong):
        assert sorted(ids(messages())) == ["cachesweeper.E005", "cachesweeper.W003"]


def test_a_subclass_of_a_per_process_backend_warns_too() -> None:
    counting = {"BACKEND": "tests.counting.CountingLocMemCache"}
    with override_settings(CACHES={"default": counting}):
        assert ids(_production_messages()) == ["cachesweeper.W001", "cachesweeper.W001"]
