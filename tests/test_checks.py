"""System checks say what is wrong with the settings and how to fix it."""

from __future__ import annotations

import ast
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
        {"WARNING_INTERVAL": -1},
        {"WARNING_INTERVAL": "60"},
        {"INSTANCE_LIMIT": 0},
        {"INSTANCE_LIMIT": "100"},
        {"INSTANCE_LIMIT": True},
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
        for settings in (
            {"GRACE": "30"},
            {"COLD_WAIT": -1},
            {"CACHEABLE_STATUSES": 200},
            {"INSTANCE_LIMIT": -5},
        )
        for found in messages(**settings)
    }
    assert any('"INSTANCE_LIMIT": 100' in hint for hint in hints)
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


# -- E007: a KEY_PREFIX that breaks keys ------------------------------------------------


@pytest.mark.parametrize("prefix", ["a b", "site\n", "tab\there", "nb\u00a0sp"])
def test_a_key_prefix_with_whitespace_or_control_characters_is_an_error(prefix: str) -> None:
    (error,) = messages(KEY_PREFIX=prefix)
    assert error.id == "cachesweeper.E007" and error.level == checks.ERROR
    assert repr(prefix) in error.msg and "memcached refuses such keys" in error.msg
    assert "letters, digits and punctuation" in str(error.hint)


def test_the_key_prefix_the_hint_suggests_passes() -> None:
    (error,) = messages(KEY_PREFIX="my site")
    assert "\"KEY_PREFIX\": 'my-site'" in str(error.hint)
    assert messages(KEY_PREFIX="my-site") == []


def test_a_key_prefix_too_long_for_memcached_keys_is_an_error_that_says_how_long() -> None:
    site = {**LOCMEM, "KEY_PREFIX": "shop"}  # the cache's own prefix: "shop:1:" before ours
    with override_settings(CACHES={"default": site}):
        (error,) = messages(KEY_PREFIX="x" * 210)
        assert error.id == "cachesweeper.E007" and "250" in error.msg
        room = int(str(error.hint).split("Shorten it to ")[1].split()[0])
        assert messages(KEY_PREFIX="x" * room) == []
        assert ids(messages(KEY_PREFIX="x" * (room + 1))) == ["cachesweeper.E007"]


def test_the_longest_key_the_check_allows_is_accepted_by_memcached(
    memcached_server: Any,
) -> None:
    """The check's arithmetic matches what memcached really takes: a grace lock key."""
    from django.core.cache import caches

    from tests.helpers import render
    from tests.servers import cache_settings

    entry = cache_settings("memcached", memcached_server.location, key_prefix="shop")
    with override_settings(CACHES={"default": entry}):
        (error,) = messages(KEY_PREFIX="x" * 300)
        room = int(str(error.hint).split("Shorten it to ")[1].split()[0])
        with override_settings(CACHESWEEPER={"KEY_PREFIX": "x" * room}):
            caches["default"].clear()
            source = "{% cachesweeper 'tag' 60 grace=5 %}{{ counter.next }}{% endcachesweeper %}"
            counter = iter(range(1, 10))
            assert render(source, counter={"next": lambda: next(counter)}) == "1"
            assert render(source, counter={"next": lambda: next(counter)}) == "1"


# -- E008: a token attribute the model lacks --------------------------------------------


@pytest.fixture
def registrations() -> Any:
    """Register models differently in a test; the test app's registrations come back after."""
    from cachesweeper import registration, registry, tokens

    saved, strategies = dict(registry._registry), dict(tokens._strategies)
    yield registration.register
    registry._registry.clear()
    registry._registry.update(saved)
    tokens._strategies.clear()
    tokens._strategies.update(strategies)
    tokens.forget_attributes()


def test_register_using_a_field_the_model_lacks_is_an_error_naming_both(
    registrations: Any,
) -> None:
    from tests.testapp.models import Topic

    registrations(Topic, using="updatd_at")
    (error,) = messages()
    assert error.id == "cachesweeper.E008" and error.level == checks.ERROR
    assert "register(Topic, using='updatd_at')" in error.msg
    assert "testapp.Topic has no field 'updatd_at'" in error.msg
    assert "updatd_at = models.DateTimeField(auto_now=True)" in str(error.hint)


def test_a_site_wide_using_names_every_registered_model_that_lacks_it() -> None:
    found = messages(USING="updated_at")
    assert {str(error.id) for error in found} == {"cachesweeper.E008"}
    named = sorted(error.msg.split(" has no field")[0].split(": ")[-1] for error in found)
    # Page has updated_at, and registered its own strategy anyway.
    assert named == [
        "testapp.Article",
        "testapp.Comment",
        "testapp.Note",
        "testapp.Restaurant",
        "testapp.Topic",
        "testapp.Vote",
    ]
    assert all("CACHESWEEPER[\"USING\"] = 'updated_at'" in error.msg for error in found)
    assert any('register(Topic, using="counter")' in str(error.hint) for error in found)


def test_the_hint_names_the_fields_that_change_on_every_save(registrations: Any) -> None:
    from tests.testapp.models import Page

    registrations(Page, using="modified")
    (error,) = messages()
    assert "(those that change on every save: updated_at)" in str(error.hint)


def test_models_that_keep_counters_on_purpose_pass(registrations: Any) -> None:
    from tests.testapp.models import Article, Comment, Note, Restaurant, Topic, Vote

    for model in (Article, Comment, Note, Restaurant, Topic, Vote):
        registrations(model, using="counter")
    assert messages(USING="updated_at") == []


# -- E004: edge options of the wrong type, with an example for that backend --------------


def test_an_edge_option_of_the_wrong_type_says_so_and_what_it_needs() -> None:
    edges = [
        {
            "BACKEND": "cachesweeper.edges.Fastly",
            "OPTIONS": {"service_id": 12345, "api_token": "t"},
        }
    ]
    (error,) = messages(EDGES=edges)
    assert error.id == "cachesweeper.E004"
    assert "OPTIONS['service_id'] has the wrong type: int (12345)" in error.msg
    assert "it must be a string, e.g. '12345'" in error.msg
    assert "needs" not in error.msg


def test_a_missing_edge_option_still_says_it_is_needed() -> None:
    edges = [{"BACKEND": "cachesweeper.edges.Fastly", "OPTIONS": {"api_token": "t"}}]
    (error,) = messages(EDGES=edges)
    assert "Fastly needs OPTIONS['service_id']" in error.msg


@pytest.mark.parametrize(
    ("backend", "options", "example"),
    [
        ("Fastly", {"service_id": 1}, '"service_id": '),
        ("Cloudflare", {"zone_id": ["z"]}, '"zone_id": '),
        ("Varnish", {"servers": "http://v"}, '"servers": ["http://127.0.0.1:6081"]'),
        ("Squid", {"servers": None}, '"servers": ["http://127.0.0.1:3128"]'),
        ("LiteSpeed", {"stael": True}, '"stale": True'),
    ],
)
def test_the_hint_shows_an_example_of_the_backend_in_question(
    backend: str, options: dict[str, Any], example: str
) -> None:
    (error,) = messages(EDGES=[{"BACKEND": f"cachesweeper.edges.{backend}", "OPTIONS": options}])
    hint = str(error.hint)
    assert f'"BACKEND": "cachesweeper.edges.{backend}"' in hint and example in hint
    others = {"Fastly", "Cloudflare", "Varnish", "Squid", "LiteSpeed"} - {backend}
    assert not any(f"edges.{other}" in hint for other in others)


def test_the_edge_in_error_is_named_among_several() -> None:
    edges = [
        {"BACKEND": "cachesweeper.edges.LiteSpeed"},
        {"BACKEND": "cachesweeper.edges.Cloudflare", "OPTIONS": {"zone_id": 7, "api_token": "t"}},
    ]
    (error,) = messages(EDGES=edges)
    assert "Cloudflare OPTIONS['zone_id'] has the wrong type" in error.msg
    assert "edges.Cloudflare" in str(error.hint)


# -- W005: django-cachepurge's CACHE_URLS -----------------------------------------------


@pytest.mark.parametrize(
    ("cache_urls", "servers"),
    [
        ("http://127.0.0.1:80/", ["http://127.0.0.1:80/"]),
        (
            ("http://10.0.0.1:3128", "http://10.0.0.2:3128"),
            ["http://10.0.0.1:3128", "http://10.0.0.2:3128"],
        ),
    ],
)
def test_cache_urls_without_edges_warns_with_the_equivalent_edge(
    cache_urls: Any, servers: list[str]
) -> None:
    with override_settings(CACHE_URLS=cache_urls):
        (warning,) = messages()
    assert warning.id == "cachesweeper.W005" and warning.level == checks.WARNING
    assert "CACHE_URLS" in warning.msg and "no PURGE reaches those caches" in warning.msg
    hint = str(warning.hint)
    suggested = ast.literal_eval(hint.split('CACHESWEEPER["EDGES"] = ')[1].split("] (")[0] + "]")
    assert suggested == [{"BACKEND": "cachesweeper.edges.Squid", "OPTIONS": {"servers": servers}}]
    # The suggestion is a valid configuration: with it (and the middleware), the checks pass.
    assert "cachesweeper.middleware.EdgeMiddleware" in hint
    edge_first = ["cachesweeper.middleware.EdgeMiddleware"]
    with override_settings(CACHE_URLS=cache_urls, MIDDLEWARE=edge_first):
        assert messages(EDGES=suggested) == []


def test_cache_urls_next_to_configured_edges_is_left_alone() -> None:
    edges = [{"BACKEND": "cachesweeper.edges.Squid", "OPTIONS": {"servers": ["http://s"]}}]
    edge_first = ["cachesweeper.middleware.EdgeMiddleware"]
    with override_settings(CACHE_URLS="http://s/", MIDDLEWARE=edge_first):
        assert messages(EDGES=edges) == []
