"""The Jinja2 extension: the same two tags, in Jinja's argument style, on every cache backend."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import jinja2
import pytest
from django.db import connection
from django.template import TemplateSyntaxError as DjangoTemplateSyntaxError
from django.template.backends.jinja2 import Jinja2
from django.test.utils import CaptureQueriesContext

import cachesweeper
from cachesweeper.jinja2 import CacheSweeperExtension
from tests.helpers import Counter, calls, make_comments, reloaded, reset
from tests.testapp.models import Article, Comment, Vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

EXTENSION = "cachesweeper.jinja2.CacheSweeperExtension"

COMMENT = (
    '{% cachesweeper comment, 500, "comment.xml" %}'
    "{{ comment.text }} votes={{ comment.vote_total() }} rendered={{ counter.next() }}"
    "{% endcachesweeper %}"
)

LIST = (
    '{% cachesweeper_for comment in comments, 500, "comment" %}'
    "[{{ loop.index }}/{{ loop.revindex0 }}{% if loop.first %}F{% endif %}"
    "{% if loop.last %}L{% endif %} {{ comment.text }} r{{ counter.next() }}]"
    "{% else %}none{% endcachesweeper_for %}"
)

ARTICLE = (
    '{% cachesweeper article, 500, "outer" %}<h1>{{ article.title }} o{{ counter.next() }}</h1>'
    '{% cachesweeper_for comment in comments, 500, "inner" %}'
    "<p>{{ comment.text }} v{{ comment.vote_total() }} i{{ counter.next() }}</p>"
    "{% endcachesweeper_for %}{% endcachesweeper %}"
)


def backend(**templates: str) -> Jinja2:
    """Django's Jinja2 backend with the extension, and ``templates`` loadable by name."""
    return Jinja2(
        {
            "NAME": "jinja2",
            "DIRS": [],
            "APP_DIRS": False,
            "OPTIONS": {"extensions": [EXTENSION], "loader": jinja2.DictLoader(templates)},
        }
    )


ENGINE = backend()


def render(source: str, **context: Any) -> str:
    return str(ENGINE.from_string(source).render(context)).strip()


# --- {% cachesweeper %} ------------------------------------------------------------------


def test_original_scenario_render_hit_vote_rerender() -> None:
    (comment,) = make_comments(1)
    counter = Counter()

    assert render(COMMENT, comment=comment, counter=counter) == "c0 votes=0 rendered=1"
    assert render(COMMENT, comment=comment, counter=counter) == "c0 votes=0 rendered=1"

    Vote.objects.create(comment=comment, value=1)  # touches the comment
    comment = reloaded(comment)  # as the next request would load it

    assert render(COMMENT, comment=comment, counter=counter) == "c0 votes=1 rendered=2"
    assert render(COMMENT, comment=comment, counter=counter) == "c0 votes=1 rendered=2"


def test_hit_is_one_round_trip_and_a_miss_one_read_and_one_write() -> None:
    (comment,) = make_comments(1)
    render(COMMENT, comment=comment, counter=Counter())
    reset()
    render(COMMENT, comment=comment, counter=Counter())
    assert calls() == ["get_many"]

    cachesweeper.invalidate_cache_for(comment)
    comment = reloaded(comment)
    reset()
    render(COMMENT, comment=comment, counter=Counter())
    assert calls() == ["get_many", "set_many"]


def test_named_templates_loaded_through_the_django_backend() -> None:
    (comment,) = make_comments(1)
    engine = backend(**{"comment.html": COMMENT, "copy.html": COMMENT})
    counter = Counter()
    template = engine.get_template("comment.html")

    assert template.render({"comment": comment, "counter": counter}) == "c0 votes=0 rendered=1"
    assert template.render({"comment": comment, "counter": counter}) == "c0 votes=0 rendered=1"
    # Same source, same line, other template: the key holds the template name.
    copy = engine.get_template("copy.html")
    assert copy.render({"comment": comment, "counter": counter}) == "c0 votes=0 rendered=2"


def test_places_do_not_share_entries() -> None:
    counter = Counter()
    two_lines = (
        '{% cachesweeper "t", 500 %}a{{ counter.next() }}{% endcachesweeper %}\n'
        '{% cachesweeper "t", 500 %}b{{ counter.next() }}{% endcachesweeper %}'
    )
    assert render(two_lines, counter=counter) == "a1\nb2"
    assert render(two_lines, counter=counter) == "a1\nb2"
    # Templates made from strings have no name: their source tells them apart.
    other = '{% cachesweeper "t", 500 %}c{{ counter.next() }}{% endcachesweeper %}'
    assert render(other, counter=counter) == "c3"


def test_vary_on_values_get_separate_entries() -> None:
    (comment,) = make_comments(1)
    source = (
        "{% cachesweeper comment, 500, lang, 'x' ~ lang %}"
        "{{ lang }}-{{ counter.next() }}{% endcachesweeper %}"
    )
    counter = Counter()

    assert render(source, comment=comment, lang="en", counter=counter) == "en-1"
    assert render(source, comment=comment, lang="fr", counter=counter) == "fr-2"
    assert render(source, comment=comment, lang="en", counter=counter) == "en-1"


def test_timeout_none_and_variables_and_trailing_comma() -> None:
    counter = Counter()
    for source in (
        '{% cachesweeper "t", None %}{{ counter.next() }}{% endcachesweeper %}',
        '{% cachesweeper "u", ttl, using=None, grace=None, %}{{ counter.next() }}'
        "{% endcachesweeper %}",
    ):
        first = render(source, counter=counter, ttl=None)
        assert render(source, counter=counter, ttl=None) == first


def test_named_tags_and_lists_of_dependencies() -> None:
    (comment,) = make_comments(1)
    counter = Counter()
    source = (
        '{% cachesweeper [comment, "frontpage"], 500 %}{{ counter.next() }}{% endcachesweeper %}'
    )
    assert render(source, comment=comment, counter=counter) == "1"
    cachesweeper.invalidate_tag("sidebar")
    assert render(source, comment=comment, counter=counter) == "1"
    cachesweeper.invalidate_tag("frontpage")
    assert render(source, comment=comment, counter=counter) == "2"
    cachesweeper.invalidate_cache_for(comment)
    assert render(source, comment=comment, counter=counter) == "3"


def test_model_class_dependency_is_not_instantiated() -> None:
    counter = Counter()
    source = "{% cachesweeper model, 500 %}{{ counter.next() }}{% endcachesweeper %}"
    with mock.patch.object(Article, "__init__", side_effect=AssertionError("instantiated")):
        assert render(source, model=Article, counter=counter) == "1"
        assert render(source, model=Article, counter=counter) == "1"

    Article.objects.create(title="new")  # register() sweeps the model on every save

    assert render(source, model=Article, counter=counter) == "2"


def test_queryset_dependency_runs_no_query_on_hit() -> None:
    Article.objects.create(title="a")
    source = (
        '{% cachesweeper articles, 500, "list" %}'
        "{% for a in articles %}{{ a.title }};{% endfor %}{% endcachesweeper %}"
    )
    assert render(source, articles=Article.objects.order_by("pk")) == "a;"

    with CaptureQueriesContext(connection) as queries:
        assert render(source, articles=Article.objects.order_by("pk")) == "a;"
    assert len(queries) == 0

    Article.objects.create(title="b")
    assert render(source, articles=Article.objects.order_by("pk")) == "a;b;"


def test_grace_keyword_serves_the_stale_copy_when_a_rerender_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    article = Article.objects.create(title="a")
    source = (
        '{% cachesweeper article, 500, grace=grace, using="default" %}'
        "{{ article.title }}{{ fail() if broken else '' }}{% endcachesweeper %}"
    )

    def fail() -> str:
        raise RuntimeError("the database is on fire")

    assert render(source, article=article, grace=30, broken=False, fail=fail) == "a"
    cachesweeper.invalidate_cache_for(article)

    with caplog.at_level(logging.ERROR, logger="cachesweeper"):
        assert render(source, article=article, grace=30, broken=True, fail=fail) == "a"
    assert "serving the stale entry" in caplog.text

    # Without grace the same failure is the page's error.
    cachesweeper.invalidate_cache_for(article)
    with pytest.raises(RuntimeError, match="on fire"):
        render(source, article=article, grace=0, broken=True, fail=fail)


def test_autoescaped_content_is_escaped_once_hit_or_miss() -> None:
    source = '{% cachesweeper "t", 500 %}{{ text }}{% endcachesweeper %}{{ text }}'
    assert render(source, text="<b>") == "&lt;b&gt;&lt;b&gt;"
    assert render(source, text="<b>") == "&lt;b&gt;&lt;b&gt;"


def test_inside_a_jinja_for_loop_the_outer_loop_is_visible() -> None:
    counter = Counter()
    source = (
        "{% for x in xs %}{% cachesweeper 'row', 500, x %}"
        "{{ loop.index }}:{{ x }}:{{ counter.next() }} {% endcachesweeper %}{% endfor %}"
    )
    assert render(source, xs=["a", "b"], counter=counter) == "1:a:1 2:b:2"
    assert render(source, xs=["a", "b"], counter=counter) == "1:a:1 2:b:2"


def test_plain_jinja_environment() -> None:
    environment = jinja2.Environment(extensions=[CacheSweeperExtension])
    template = environment.from_string('{% cachesweeper "t", 5 %}{{ n() }}{% endcachesweeper %}')
    counter = Counter()
    assert template.render(n=counter.next) == "1"
    assert template.render(n=counter.next) == "1"


# --- {% cachesweeper_for %} --------------------------------------------------------------


def test_items_render_with_loop_and_are_cached() -> None:
    comments = make_comments(3)
    counter = Counter()

    first = render(LIST, comments=comments, counter=counter)
    assert first == "[1/2F c0 r1][2/1 c1 r2][3/0L c2 r3]"
    assert render(LIST, comments=comments, counter=counter) == first


def test_loop_variables() -> None:
    source = (
        "{% cachesweeper_for c in items, 500 %}"
        "{{ loop.index }},{{ loop.index0 }},{{ loop.revindex }},{{ loop.revindex0 }},"
        "{{ loop.first }},{{ loop.last }},{{ loop.length }},{{ loop.depth }},"
        "{{ loop.cycle('odd', 'even') }}:{{ c }};"
        "{% endcachesweeper_for %}"
    )
    assert render(source, items=["a", "b", "c"]) == (
        "1,0,3,2,True,False,3,1,odd:a;2,1,2,1,False,False,3,1,even:b;3,2,1,0,False,True,3,1,odd:c;"
    )


def test_warm_list_of_fifty_is_one_read_and_no_write() -> None:
    comments = make_comments(50)
    render(LIST, comments=comments, counter=Counter())
    reset()

    render(LIST, comments=comments, counter=Counter())

    assert calls() == ["get_many"]


def test_swept_list_writes_all_misses_in_one_set_many() -> None:
    comments = make_comments(50)
    render(LIST, comments=comments, counter=Counter())  # creates the tokens
    for comment in comments:
        cachesweeper.invalidate_cache_for(comment)
    comments = [reloaded(comment) for comment in comments]
    reset()

    render(LIST, comments=comments, counter=Counter())

    # The list entry and the item entries are read, the items and the list written.
    assert calls() == ["get_many", "get_many", "set_many", "set_many"]


def test_sweeping_one_item_rerenders_only_that_item() -> None:
    comments = make_comments(3)
    counter = Counter()
    render(LIST, comments=comments, counter=counter)

    comments[1].text = "edited"
    comments[1].save()

    assert render(LIST, comments=comments, counter=counter) == (
        "[1/2F c0 r1][2/1 edited r4][3/0L c2 r3]"
    )


def test_empty_sequence_renders_the_else_block() -> None:
    assert render(LIST, comments=[], counter=Counter()) == "none"
    assert render(LIST, comments=None, counter=Counter()) == "none"
    assert render(LIST, comments=Comment.objects.none(), counter=Counter()) == "none"
    assert render(LIST, counter=Counter()) == "none"  # undefined, like Jinja's for
    without_else = "{% cachesweeper_for c in items, 5 %}{{ c }}{% endcachesweeper_for %}"
    assert render(without_else, items=[]) == ""


def test_the_else_block_sees_outer_names_not_the_loop_variable() -> None:
    source = (
        "{% cachesweeper_for c in items, 5 %}{{ c }}{% else %}{{ c }}{% endcachesweeper_for %}"
    )
    assert render(source, items=[], c="outer") == "outer"
    assert render(source, items=["inner"], c="outer") == "inner"


def test_queryset_items() -> None:
    comments = make_comments(2)
    counter = Counter()
    queryset = Comment.objects.order_by("pk")
    assert render(LIST, comments=queryset, counter=counter) == "[1/1F c0 r1][2/0L c1 r2]"
    # Same items, other order: each item's entry is reused as stored.
    reordered = list(reversed(comments))
    assert render(LIST, comments=reordered, counter=counter) == "[2/0L c1 r2][1/1F c0 r1]"


def test_vary_on_may_use_the_loop_variable_and_loop() -> None:
    comments = make_comments(2)
    counter = Counter()
    source = (
        "{% cachesweeper_for c in comments, 500, c.text, lang, loop.first %}"
        "{{ c.text }}{{ lang }}{{ counter.next() }} {% endcachesweeper_for %}"
    )
    assert render(source, comments=comments, lang="en", counter=counter) == "c0en1 c1en2"
    assert render(source, comments=comments, lang="fr", counter=counter) == "c0fr3 c1fr4"
    assert render(source, comments=comments, lang="en", counter=counter) == "c0en1 c1en2"
    # loop.first is part of the key: moved to the front, c1 gets its own entry.
    reordered = list(reversed(comments))
    assert render(source, comments=reordered, lang="en", counter=counter) == "c1en5 c0en6"


def test_warm_list_with_per_item_vary_on_is_still_one_read() -> None:
    comments = make_comments(50)
    source = (
        "{% cachesweeper_for c in comments, 500, c.text, grace=10 %}{{ c.text }}"
        "{% endcachesweeper_for %}"
    )
    render(source, comments=comments)
    reset()

    render(source, comments=comments)

    assert calls() == ["get_many"]


def test_tuple_targets_unpack_and_depend_on_the_whole_item() -> None:
    comments = make_comments(2)
    counter = Counter()
    source = (
        "{% cachesweeper_for comment, label in pairs, 500 %}"
        "{{ label }}={{ comment.text }}:{{ counter.next() }};{% endcachesweeper_for %}"
    )
    pairs = [(comments[0], "a"), (comments[1], "b")]
    assert render(source, pairs=pairs, counter=counter) == "a=c0:1;b=c1:2;"
    assert render(source, pairs=pairs, counter=counter) == "a=c0:1;b=c1:2;"
    cachesweeper.invalidate_cache_for(comments[1])
    assert render(source, pairs=pairs, counter=counter) == "a=c0:1;b=c1:3;"


# --- nesting -----------------------------------------------------------------------------


def test_sweeping_an_inner_object_rerenders_the_outer_fragment() -> None:
    comments = make_comments(2)
    article = comments[0].article
    counter = Counter()
    first = render(ARTICLE, article=article, comments=comments, counter=counter)
    assert first == "<h1>Hello o1</h1><p>c0 v0 i2</p><p>c1 v0 i3</p>"
    assert render(ARTICLE, article=article, comments=comments, counter=counter) == first

    # Only the comment is swept (no touch): the outer still sees it changed.
    cachesweeper.invalidate_cache_for(comments[0])

    assert render(ARTICLE, article=article, comments=comments, counter=counter) == (
        "<h1>Hello o4</h1><p>c0 v0 i5</p><p>c1 v0 i3</p>"
    )


def test_warm_nested_fragment_is_one_round_trip() -> None:
    comments = make_comments(2)
    article = comments[0].article
    render(ARTICLE, article=article, comments=comments, counter=Counter())
    render(ARTICLE, article=article, comments=comments, counter=Counter())
    reset()

    render(ARTICLE, article=article, comments=comments, counter=Counter())

    assert calls() == ["get_many"]


def test_vote_cascades_through_touch_to_outer_fragment() -> None:
    comments = make_comments(2)
    article = comments[0].article
    counter = Counter()
    render(ARTICLE, article=article, comments=comments, counter=counter)

    Vote.objects.create(comment=comments[1], value=3)

    assert render(ARTICLE, article=article, comments=comments, counter=counter) == (
        "<h1>Hello o4</h1><p>c0 v0 i2</p><p>c1 v3 i5</p>"
    )


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{% cachesweeper comment %}x{% endcachesweeper %}",
            "requires a dependency and a timeout",
        ),
        ("{% cachesweeper comment 5 %}x{% endcachesweeper %}", "separated by commas"),
        ("{% cachesweeper c, 5, foo=1 %}x{% endcachesweeper %}", "unknown keyword 'foo'"),
        ("{% cachesweeper c, 5, grace=1, grace=2 %}x{% endcachesweeper %}", "'grace' twice"),
        ("{% cachesweeper c, 5, grace=1, x %}x{% endcachesweeper %}", "positional argument"),
        ('{% cachesweeper c, "soon" %}x{% endcachesweeper %}', "non-integer timeout"),
        ('{% cachesweeper c, 5, grace="x" %}x{% endcachesweeper %}', "non-integer grace"),
        ("{% cachesweeper c, 5, using=1 %}x{% endcachesweeper %}", "non-string using"),
        ("{% cachesweeper c, 5 %}x", "endcachesweeper"),
        ("{% cachesweeper_for c of cs, 5 %}{% endcachesweeper_for %}", "cachesweeper_for c in"),
        ("{% cachesweeper_for c in cs %}{% endcachesweeper_for %}", "requires a timeout"),
        ("{% cachesweeper_for c in cs, %}{% endcachesweeper_for %}", "requires a timeout"),
        ("{% cachesweeper_for c in cs 5 %}{% endcachesweeper_for %}", "separated by commas"),
        ("{% cachesweeper_for c in cs, True %}{% endcachesweeper_for %}", "non-integer timeout"),
        ("{% cachesweeper_for loop in cs, 5 %}{% endcachesweeper_for %}", "'loop' variable"),
        ("{% cachesweeper_for c in cs, 5 %}{% empty %}{% endcachesweeper_for %}", "empty"),
    ],
)
def test_syntax_errors_at_parse_time(source: str, message: str) -> None:
    with pytest.raises(jinja2.TemplateSyntaxError, match=message) as error:
        ENGINE.from_string(source)
    assert error.value.lineno == 1


def test_syntax_errors_name_the_template_and_line_through_the_django_backend() -> None:
    engine = backend(**{"broken.html": "ok\n\n{% cachesweeper c %}x{% endcachesweeper %}"})
    with pytest.raises(DjangoTemplateSyntaxError, match="requires a dependency") as error:
        engine.get_template("broken.html")
    cause = error.value.__cause__
    assert isinstance(cause, jinja2.TemplateSyntaxError)
    assert (cause.name, cause.lineno) == ("broken.html", 3)


def test_bad_values_at_render_time() -> None:
    with pytest.raises(jinja2.TemplateRuntimeError, match="non-integer timeout value: 'soon'"):
        render("{% cachesweeper 't', ttl %}x{% endcachesweeper %}", ttl="soon")
    with pytest.raises(jinja2.TemplateRuntimeError, match="non-integer grace value: 'x'"):
        render("{% cachesweeper 't', 5, grace=g %}x{% endcachesweeper %}", g="x")
    with pytest.raises(jinja2.TemplateRuntimeError, match="non-integer timeout value"):
        render("{% cachesweeper_for c in cs, ttl %}x{% endcachesweeper_for %}", cs=[1])
    with pytest.raises(jinja2.UndefinedError, match=r"cannot resolve its dependency.*missing"):
        render("{% cachesweeper missing, 5 %}x{% endcachesweeper %}")
    with pytest.raises(TypeError, match="cannot depend on 3"):
        render("{% cachesweeper 3, 5 %}x{% endcachesweeper %}")


def test_async_environments_are_refused() -> None:
    environment = jinja2.Environment(extensions=[CacheSweeperExtension], enable_async=True)
    with pytest.raises(jinja2.TemplateSyntaxError, match="async"):
        environment.from_string('{% cachesweeper "t", 5 %}x{% endcachesweeper %}')
