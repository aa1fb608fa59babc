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


DUMMY = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
FILE = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/tmp/cs"}
DATABASE = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cs_cache"}


@pytest.mark.parametrize(
    "settings",
    [
        {"GRACE": -1},
        {"COLD_WAIT": "2"},
        {"CACHEABLE_STATUSES": [200, 999]},
        {"CACHE": ""},
        {"KEY_PREFIX": None},
        {"TIMEOUT": 5},
        {"CACHE": "fragments"},
        {"PAGE_RULES": [("/", "ten", 0)]},
        {"EDGES": [{"BACKEND": "cachesweeper.edges.Nope"}]},
    ],
)
def test_every_error_has_a_hint(settings: dict[str, Any]) -> None:
    found = messages(**settings)
    assert found
    for message in found:
        assert message.hint, message.id


def test_wrong_type_hints_say_what_to_write() -> None:
    hints = {
        str(found.hint)
        for settings in ({"GRACE": "30"}, {"COLD_WAIT": -1}, {"CACHEABLE_STATUSES": 200})
        for found in messages(**settings)
    }
    assert any('"GRACE": 30' in hint for hint in hints)
    assert any('"COLD_WAIT": 2.0' in hint for hint in hints)
    assert any('"CACHEABLE_STATUSES": [200' in hint for hint in hints)
    (error,) = messages(USING=3)
    assert "'counter'" in str(error.hint)


def test_version_cache_that_stores_nothing_is_an_error_even_in_debug() -> None:
    with override_settings(CACHES={"default": LOCMEM, "none": DUMMY}):
        (error,) = messages(VERSION_CACHE="none")
    assert error.id == "cachesweeper.E006" and error.level == checks.ERROR
    assert "stores nothing" in error.msg and "VERSION_CACHE" in str(error.hint)


def test_caching_turned_off_on_purpose_is_not_an_error() -> None:
    with override_settings(CACHES={"default": DUMMY}):
        assert messages() == []


def test_a_dummy_version_cache_really_makes_every_read_a_miss() -> None:
    """The fact behind E006: a fragment renders every time, however often it is read."""
    from django.template import Context, Template

    template = Template(
        '{% load cachesweeper %}{% cachesweeper "tag" 60 %}{{ n }}{% endcachesweeper %}'
    )
    with override_settings(
        CACHES={"default": LOCMEM, "none": DUMMY}, CACHESWEEPER={"VERSION_CACHE": "none"}
    ):
        assert [template.render(Context({"n": n})) for n in range(3)] == ["0", "1", "2"]
    with override_settings(CACHES={"default": LOCMEM}):
        assert [template.render(Context({"n": n})) for n in range(3)] == ["0", "0", "0"]


def test_file_version_cache_in_production_warns_that_add_is_not_atomic() -> None:
    caches = {"default": REDIS, "files": FILE}
    with override_settings(CACHES=caches, CACHESWEEPER={"VERSION_CACHE": "files"}):
        found = _production_messages()
    assert sorted(ids(found)) == ["cachesweeper.W001", "cachesweeper.W004"]
    (warning,) = [message for message in found if message.id == "cachesweeper.W004"]
    assert "add()" in warning.msg and "Redis" in str(warning.hint)


def test_file_entries_with_counters_elsewhere_do_not_warn_about_add() -> None:
    caches = {"default": REDIS, "files": FILE}
    with override_settings(CACHES=caches, CACHESWEEPER={"CACHE": "files"}):
        assert ids(_production_messages()) == ["cachesweeper.W001"]


def test_file_add_really_overwrites_a_write_that_lands_between_check_and_set(
    tmp_path: Any,
) -> None:
    """The fact behind W004, straight from Django: if it ever becomes atomic, drop W004."""
    from django.core.cache.backends.filebased import FileBasedCache

    cache = FileBasedCache(str(tmp_path), {})
    has_key = cache.has_key

    def sweep_lands_meanwhile(key: str, version: int | None = None) -> bool:
        missing = has_key(key, version)
        cache.set(key, "sweep", None)
        return missing

    cache.has_key = sweep_lands_meanwhile  # type: ignore[method-assign]
    assert cache.add("counter", "created", None) is True
    assert cache.get("counter") == "created"  # the sweep's token is gone


@pytest.mark.parametrize(
    ("backend", "says", "never_says"),
    [
        (LOCMEM, "each process keeps to itself", "machine"),
        (FILE, "one machine", "each process keeps"),
        (DATABASE, "query on the cache table", "each process keeps"),
    ],
)
def test_w001_says_what_is_wrong_with_each_kind(
    backend: dict[str, str], says: str, never_says: str
) -> None:
    with override_settings(CACHES={"default": backend}):
        found = _production_messages()
    w001 = [message for message in found if message.id == "cachesweeper.W001"]
    assert len(w001) == 2
    assert says in w001[0].msg and never_says not in w001[0].msg
