"""Errors that say what happened: each as a new user met it, and what they see now.

Run-time behaviours run on every cache kind (LocMem, memcached, django-redis and
Django's RedisCache).
"""

from __future__ import annotations

import logging
import re

import jinja2
import pytest
from django.core.cache import InvalidCacheBackendError
from django.http import HttpRequest, HttpResponse
from django.template import TemplateSyntaxError
from django.test import RequestFactory

import cachesweeper
from tests.helpers import Counter, render
from tests.test_jinja2 import ENGINE
from tests.test_jinja2 import render as render_jinja

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


def unreachable(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]


# -- negative timeouts and grace ----------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        '{% cachesweeper "t" -5 %}x{% endcachesweeper %}',
        '{% cachesweeper "t" ttl %}x{% endcachesweeper %}',
        "{% cachesweeper_for c in items -5 %}x{% endcachesweeper_for %}",
        "{% cachesweeper_for c in items ttl %}x{% endcachesweeper_for %}",
    ],
)
def test_a_negative_timeout_is_a_template_syntax_error(source: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=r"negative timeout value: -5; use seconds >= 0"):
        render(source, ttl=-5, items=["a", "b"])


def test_a_negative_grace_is_a_template_syntax_error() -> None:
    with pytest.raises(TemplateSyntaxError, match=r"negative grace value: -1"):
        render('{% cachesweeper "t" 60 grace=-1 %}x{% endcachesweeper %}')


def test_a_zero_timeout_is_accepted_and_stores_nothing_like_djangos_cache_tag() -> None:
    counter = Counter()
    source = '{% cachesweeper "t" 0 %}{{ counter.next }}{% endcachesweeper %}'
    assert render(source, counter=counter) == "1"
    assert render(source, counter=counter) == "2"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{% cachesweeper "t", -5 %}x{% endcachesweeper %}', "negative timeout value: -5"),
        ('{% cachesweeper "t", 5, grace=-2 %}x{% endcachesweeper %}', "negative grace value: -2"),
        ("{% cachesweeper_for c in cs, -1 %}x{% endcachesweeper_for %}", "negative timeout"),
    ],
)
def test_a_literal_negative_in_jinja_fails_at_parse_time(source: str, message: str) -> None:
    with pytest.raises(jinja2.TemplateSyntaxError, match=message):
        ENGINE.from_string(source)


def test_a_literal_zero_and_minus_zero_parse_in_jinja() -> None:
    assert render_jinja('{% cachesweeper "t", -0 %}x{% endcachesweeper %}') == "x"


def test_a_negative_value_resolved_at_render_time_in_jinja() -> None:
    with pytest.raises(jinja2.TemplateRuntimeError, match="negative timeout value: -5"):
        render_jinja('{% cachesweeper "t", ttl %}x{% endcachesweeper %}', ttl=-5)
    with pytest.raises(jinja2.TemplateRuntimeError, match="negative grace value: -3"):
        render_jinja('{% cachesweeper "t", 5, grace=g %}x{% endcachesweeper %}', g=-3)
    with pytest.raises(jinja2.TemplateRuntimeError, match="negative timeout value: -5"):
        render_jinja(
            "{% cachesweeper_for c in cs, ttl %}x{% endcachesweeper_for %}", cs=["a"], ttl=-5
        )


# -- using= an alias that is not in CACHES ------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        '{% cachesweeper "t" 60 using="nope" %}x{% endcachesweeper %}',
        '{% cachesweeper_for c in items 60 using="nope" %}x{% endcachesweeper_for %}',
    ],
)
def test_an_unknown_cache_alias_is_a_template_syntax_error_naming_it(
    source: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="cachesweeper"),
        pytest.raises(TemplateSyntaxError) as raised,
    ):
        render(source, items=["a"])
    assert "unknown cache alias: using='nope' is not in CACHES ('default')" in str(raised.value)
    assert unreachable(caplog) == []


def test_an_unknown_cache_alias_in_jinja_names_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cachesweeper"):
        with pytest.raises(jinja2.TemplateRuntimeError, match="using='nope' is not in CACHES"):
            render_jinja('{% cachesweeper "t", 60, using="nope" %}x{% endcachesweeper %}')
        with pytest.raises(jinja2.TemplateRuntimeError, match="using='nope' is not in CACHES"):
            render_jinja(
                "{% cachesweeper_for c in cs, 60, using=u %}x{% endcachesweeper_for %}",
                cs=["a"],
                u="nope",
            )
    assert unreachable(caplog) == []


def test_cache_page_with_an_unknown_alias_raises_instead_of_reporting_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @cachesweeper.cache_page(60, using="nope")
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("x")

    with (
        caplog.at_level(logging.DEBUG, logger="cachesweeper"),
        pytest.raises(InvalidCacheBackendError, match="nope"),
    ):
        view(RequestFactory().get("/"))
    assert unreachable(caplog) == []


# -- an entry too large for the server ----------------------------------------------------

BIG = '{% cachesweeper "big" 60 %}{{ counter.next }}:{{ payload }}{% endcachesweeper %}'
#: Over memcached's default item size limit (1 MB); Redis takes up to 512 MB.
PAYLOAD = "x" * 1_100_000


def test_an_entry_too_large_for_the_server_is_not_reported_as_an_outage(
    cache_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    with caplog.at_level(logging.DEBUG, logger="cachesweeper"):
        first = render(BIG, counter=counter, payload=PAYLOAD)
        second = render(BIG, counter=counter, payload=PAYLOAD)
    assert first == "1:" + PAYLOAD  # the page renders either way
    assert unreachable(caplog) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if cache_backend != "memcached":
        assert second == first and warnings == []  # stored, and a hit
        return
    assert second == "2:" + PAYLOAD  # refused, so rendered again
    (warning,) = warnings  # one per entry per interval, not one per request
    found = re.search(r"entry of (\d+) bytes not stored: larger than the server accepts", warning)
    assert found is not None, warning
    assert len(PAYLOAD) < int(found.group(1)) < len(PAYLOAD) + 1000
    assert "object too large for cache" in warning and "unless started with -I" in warning


@pytest.mark.parametrize("cache_backend", ["memcached"], indirect=True)
def test_the_cache_keeps_working_around_an_entry_too_large(cache_backend: str) -> None:
    """Small fragments written with the big one (one set_many) are stored and hit."""
    counter = Counter()
    source = (
        "{% cachesweeper_for c in items 60 %}{{ counter.next }}"
        "{% if c == 'b' %}{{ payload }}{% endif %};{% endcachesweeper_for %}"
    )
    first = render(source, items=["a", "b", "c"], counter=counter, payload=PAYLOAD)
    second = render(source, items=["a", "b", "c"], counter=counter, payload=PAYLOAD)
    assert first == f"1;2{PAYLOAD};3;"
    assert second == f"1;4{PAYLOAD};3;"  # only the big item rendered again
    small = '{% cachesweeper "small" 60 %}{{ counter.next }}{% endcachesweeper %}'
    assert render(small, counter=counter) == render(small, counter=counter) == "5"
