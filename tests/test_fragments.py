"""The ``{% cachesweeper %}`` tag on every cache backend: hit, miss, sweep."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.template import TemplateSyntaxError
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import cachesweeper
from tests.helpers import COMMENT, Counter, calls, missed_keys, reloaded, render, reset, ttl_of
from tests.testapp.models import Article, Comment, Page, Vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


@pytest.fixture
def second_cache(cache_backend: str) -> Iterator[str]:
    """A second alias, ``"second"``, on the same kind of cache, kept apart by its key prefix."""
    default = settings.CACHES["default"]
    with override_settings(CACHES={"default": default, "second": {**default, "KEY_PREFIX": "2"}}):
        reset("second")
        yield "second"


def make_comment(text: str = "First!") -> Comment:
    article = Article.objects.create(title="Hello")
    return reloaded(Comment.objects.create(article=article, text=text))


def test_original_scenario_render_hit_vote_rerender() -> None:
    comment = make_comment()
    counter = Counter()

    assert render(COMMENT, comment=comment, counter=counter) == "First! votes=0 rendered=1"
    # Served from the entry: the template did not run again.
    assert render(COMMENT, comment=comment, counter=counter) == "First! votes=0 rendered=1"

    Vote.objects.create(comment=comment, value=1)  # touches the comment
    comment = reloaded(comment)  # as the next request would load it

    assert render(COMMENT, comment=comment, counter=counter) == "First! votes=1 rendered=2"
    assert render(COMMENT, comment=comment, counter=counter) == "First! votes=1 rendered=2"


def test_hit_is_one_round_trip_and_no_write() -> None:
    comment = make_comment()
    render(COMMENT, comment=comment, counter=Counter())
    reset()

    render(COMMENT, comment=comment, counter=Counter())

    assert calls() == ["get_many"]


def test_miss_reads_once_and_writes_once() -> None:
    comment = make_comment()
    render(COMMENT, comment=comment, counter=Counter())
    cachesweeper.invalidate_cache_for(comment)
    comment = reloaded(comment)
    reset()

    render(COMMENT, comment=comment, counter=Counter())

    assert calls() == ["get_many", "set_many"]


def test_original_load_name_works() -> None:
    comment = make_comment()
    source = (
        "{% load cachesweeper_tags %}{% cachesweeper comment 500 %}{{ counter.next }}"
        "{% endcachesweeper %}"
    )
    from django.template import engines

    template = engines["django"].from_string(source)
    counter = Counter()
    assert template.render({"comment": comment, "counter": counter}) == "1"
    assert template.render({"comment": comment, "counter": counter}) == "1"


def test_sweeping_one_instance_leaves_others_cached() -> None:
    first, second = make_comment("one"), make_comment("two")
    counter = Counter()
    render(COMMENT, comment=first, counter=counter)
    render(COMMENT, comment=second, counter=counter)

    cachesweeper.invalidate_cache_for(first)

    assert render(COMMENT, comment=first, counter=counter).endswith("rendered=3")
    assert render(COMMENT, comment=second, counter=counter).endswith("rendered=2")


def test_vary_on_values_get_separate_entries() -> None:
    comment = make_comment()
    source = (
        "{% cachesweeper comment 500 lang %}{{ lang }}-{{ counter.next }}{% endcachesweeper %}"
    )
    counter = Counter()

    assert render(source, comment=comment, lang="en", counter=counter) == "en-1"
    assert render(source, comment=comment, lang="fr", counter=counter) == "fr-2"
    assert render(source, comment=comment, lang="en", counter=counter) == "en-1"


def test_two_places_in_templates_do_not_share_an_entry() -> None:
    comment = make_comment()
    counter = Counter()
    source = (
        "{% cachesweeper comment 500 %}a{{ counter.next }}{% endcachesweeper %}\n"
        "{% cachesweeper comment 500 %}b{{ counter.next }}{% endcachesweeper %}"
    )
    assert render(source, comment=comment, counter=counter) == "a1\nb2"


def test_ttl_expiry_renders_again() -> None:
    comment = make_comment()
    counter = Counter()
    source = "{% cachesweeper comment 1 %}{{ counter.next }}{% endcachesweeper %}"

    assert render(source, comment=comment, counter=counter) == "1"
    assert render(source, comment=comment, counter=counter) == "1"
    time.sleep(2.1)
    assert render(source, comment=comment, counter=counter) == "2"


def test_timeout_none_means_no_expiry_and_variables_work(cache_backend: str) -> None:
    comment = make_comment()
    counter = Counter()
    source = "{% cachesweeper comment ttl %}{{ counter.next }}{% endcachesweeper %}"
    with missed_keys() as keys:
        assert render(source, comment=comment, counter=counter, ttl=None) == "1"
        assert render(source, comment=comment, counter=counter, ttl=None) == "1"
        # The timeout is not part of the fragment's identity: the same entry.
        assert render(source, comment=comment, counter=counter, ttl=500) == "1"

    # One entry, stored without expiry on the server (not timeout=0: "do not store").
    assert len(keys) == 1
    assert ttl_of(cache_backend, keys[0]) is None


def test_named_tags() -> None:
    counter = Counter()
    source = '{% cachesweeper "frontpage" 500 %}{{ counter.next }}{% endcachesweeper %}'
    assert render(source, counter=counter) == "1"
    assert render(source, counter=counter) == "1"

    cachesweeper.invalidate_tag("sidebar")
    assert render(source, counter=counter) == "1"

    cachesweeper.invalidate_tag("frontpage")
    assert render(source, counter=counter) == "2"


def test_list_of_dependencies_is_swept_by_any_of_them() -> None:
    comment = make_comment()
    counter = Counter()
    source = "{% cachesweeper deps 500 %}{{ counter.next }}{% endcachesweeper %}"
    deps = [comment, "frontpage"]
    assert render(source, deps=deps, counter=counter) == "1"
    cachesweeper.invalidate_tag("frontpage")
    assert render(source, deps=deps, counter=counter) == "2"
    cachesweeper.invalidate_cache_for(comment)
    assert render(source, deps=deps, counter=counter) == "3"


def test_model_class_dependency_is_not_instantiated() -> None:
    counter = Counter()
    source = "{% cachesweeper model 500 %}{{ counter.next }}{% endcachesweeper %}"
    assert render(source, model=Article, counter=counter) == "1"
    assert render(source, model=Article, counter=counter) == "1"

    Article.objects.create(title="new")  # register() sweeps the model on every save

    assert render(source, model=Article, counter=counter) == "2"


def test_invalidate_model_leaves_instance_fragments() -> None:
    comment = make_comment()
    counter = Counter()
    on_model = "{% cachesweeper model 500 %}m{{ counter.next }}{% endcachesweeper %}"
    assert render(on_model, model=Comment, counter=counter) == "m1"
    assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=2")

    cachesweeper.invalidate_model(Comment)

    assert render(on_model, model=Comment, counter=counter) == "m3"
    assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=2")


def test_queryset_dependency_runs_no_query_on_hit() -> None:
    Article.objects.create(title="a")
    source = (
        '{% cachesweeper articles 500 "list" %}'
        "{% for a in articles %}{{ a.title }};{% endfor %}{% endcachesweeper %}"
    )
    articles = Article.objects.order_by("pk")
    assert render(source, articles=articles) == "a;"

    with CaptureQueriesContext(connection) as queries:
        assert render(source, articles=Article.objects.order_by("pk")) == "a;"
    assert len(queries) == 0

    Article.objects.create(title="b")
    assert render(source, articles=Article.objects.order_by("pk")) == "a;b;"


def test_different_querysets_do_not_share_an_entry() -> None:
    Article.objects.create(title="a")
    Article.objects.create(title="b")
    source = (
        "{% cachesweeper articles 500 %}"
        "{% for a in articles %}{{ a.title }}{% endfor %}{% endcachesweeper %}"
    )
    assert render(source, articles=Article.objects.filter(title="a")) == "a"
    assert render(source, articles=Article.objects.filter(title="b")) == "b"


def test_attribute_strategy_needs_no_token_round_trip() -> None:
    page = Page.objects.create(title="About")
    counter = Counter()
    source = "{% cachesweeper page 500 %}{{ page.title }}{{ counter.next }}{% endcachesweeper %}"
    render(source, page=page, counter=counter)
    reset()

    assert render(source, page=page, counter=counter) == "About1"
    assert calls() == ["get"]  # the entry only, as Django's own {% cache %}

    page.title = "About us"
    page.save()  # auto_now moves updated_at: the token changes with the row

    assert render(source, page=page, counter=counter) == "About us2"


def test_attribute_strategy_ignores_version_cache_eviction() -> None:
    page = Page.objects.create(title="About")
    counter = Counter()
    source = "{% cachesweeper page 500 %}{{ counter.next }}{% endcachesweeper %}"
    render(source, page=page, counter=counter)
    from django.core.cache import caches

    from cachesweeper.tokens import token_key

    caches["default"].delete(token_key(f"testapp.page.{page.pk}"))
    assert render(source, page=page, counter=counter) == "1"


def test_bad_arguments_are_template_syntax_errors() -> None:
    with pytest.raises(TemplateSyntaxError, match="requires a dependency and a timeout"):
        render("{% cachesweeper comment %}x{% endcachesweeper %}")
    with pytest.raises(TemplateSyntaxError, match="unknown keyword 'foo'"):
        render("{% cachesweeper comment 5 foo=1 %}x{% endcachesweeper %}")
    with pytest.raises(TemplateSyntaxError, match="non-integer timeout"):
        render('{% cachesweeper "t" "soon" %}x{% endcachesweeper %}')
    with pytest.raises(TemplateSyntaxError, match="non-integer grace"):
        render('{% cachesweeper "t" 5 grace="x" %}x{% endcachesweeper %}')
    with pytest.raises(TemplateSyntaxError, match="cannot resolve its dependency 'missing'"):
        render("{% cachesweeper missing 5 %}x{% endcachesweeper %}")


def test_editing_a_fragment_body_gives_it_a_new_entry() -> None:
    comment = make_comment()
    counter = Counter()
    before = "{% cachesweeper comment 500 %}old {{ counter.next }}{% endcachesweeper %}"
    after = "{% cachesweeper comment 500 %}new {{ counter.next }}{% endcachesweeper %}"
    assert render(before, comment=comment, counter=counter) == "old 1"
    assert render(after, comment=comment, counter=counter) == "new 2"
    assert render(before, comment=comment, counter=counter) == "old 1"


def test_a_tuple_of_dependencies_is_swept_by_any_of_them() -> None:
    comment = make_comment()
    counter = Counter()
    source = "{% cachesweeper deps 500 %}{{ counter.next }}{% endcachesweeper %}"
    deps = (comment, "frontpage")
    assert render(source, deps=deps, counter=counter) == "1"
    assert render(source, deps=deps, counter=counter) == "1"
    cachesweeper.invalidate_tag("frontpage")
    assert render(source, deps=deps, counter=counter) == "2"
    cachesweeper.invalidate_cache_for(comment)
    assert render(source, deps=(reloaded(comment), "frontpage"), counter=counter) == "3"


def test_using_keyword_stores_the_entry_in_that_cache(second_cache: str) -> None:
    from tests.helpers import missed_keys

    comment = make_comment()
    counter = Counter()
    source = '{% cachesweeper comment 500 using="second" %}{{ counter.next }}{% endcachesweeper %}'
    with missed_keys() as keys:
        assert render(source, comment=comment, counter=counter) == "1"
    (key,) = keys
    assert caches["second"].get(key) is not None
    assert caches["default"].get(key) is None

    reset()
    reset("second")
    assert render(source, comment=comment, counter=counter) == "1"
    # The entry from "second", the token from the version cache ("default").
    assert calls("second") == ["get_many"] and calls() == ["get_many"]

    cachesweeper.invalidate_cache_for(comment)
    assert render(source, comment=reloaded(comment), counter=counter) == "2"


def test_a_separate_version_cache_holds_the_tokens(second_cache: str) -> None:
    from cachesweeper.tokens import token_key
    from tests.helpers import missed_keys

    with override_settings(CACHESWEEPER={"VERSION_CACHE": "second"}):
        comment = make_comment()
        counter = Counter()
        with missed_keys() as keys:
            assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=1")
        (key,) = keys
        name = f"testapp.comment.{comment.pk}"
        assert isinstance(caches["second"].get(token_key(name)), int)
        assert caches["default"].get(token_key(name)) is None
        assert caches["default"].get(key) is not None
        assert caches["second"].get(key) is None

        reset()
        reset("second")
        assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=1")
        assert calls() == ["get_many"] and calls("second") == ["get_many"]

        comment.text = "edited"
        comment.save()  # register(): the sweep bumps the token in "second"
        assert render(COMMENT, comment=comment, counter=counter) == ("edited votes=0 rendered=2")
