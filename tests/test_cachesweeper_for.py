"""``{% cachesweeper_for %}``: one fragment per item, one read for the whole list."""

from __future__ import annotations

import pytest

import cachesweeper
from tests.helpers import calls, reloaded, render, reset
from tests.test_fragments import Counter
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

LIST = (
    '{% cachesweeper_for comment in comments 500 "comment" %}'
    "[{{ forloop.counter }}/{{ forloop.revcounter0 }}{% if forloop.first %}F{% endif %}"
    "{% if forloop.last %}L{% endif %} {{ comment.text }} r{{ counter.next }}]"
    "{% empty %}none{% endcachesweeper_for %}"
)


def make_comments(count: int) -> list[Comment]:
    article = Article.objects.create(title="Hello")
    created = [Comment.objects.create(article=article, text=f"c{i}") for i in range(count)]
    return [reloaded(comment) for comment in created]


def test_items_render_with_forloop_and_are_cached() -> None:
    comments = make_comments(3)
    counter = Counter()

    first = render(LIST, comments=comments, counter=counter)
    assert first == "[1/2F c0 r1][2/1 c1 r2][3/0L c2 r3]"
    assert render(LIST, comments=comments, counter=counter) == first


def test_warm_list_of_fifty_is_one_read_and_no_write() -> None:
    comments = make_comments(50)
    render(LIST, comments=comments, counter=Counter())
    reset()

    render(LIST, comments=comments, counter=Counter())

    assert calls() == ["get_many"]


def test_cold_list_writes_all_misses_in_one_set_many() -> None:
    comments = make_comments(50)
    render(LIST, comments=comments[:10], counter=Counter())  # creates the tokens of 10
    for comment in comments[:10]:
        cachesweeper.invalidate_cache_for(comment)
    comments = [reloaded(comment) for comment in comments]
    reset()

    render(LIST, comments=comments[:10], counter=Counter())

    assert calls() == ["get_many", "set_many"]


def test_sweeping_one_item_rerenders_only_that_item() -> None:
    comments = make_comments(3)
    counter = Counter()
    render(LIST, comments=comments, counter=counter)

    comments[1].text = "edited"
    comments[1].save()

    assert render(LIST, comments=comments, counter=counter) == (
        "[1/2F c0 r1][2/1 edited r4][3/0L c2 r3]"
    )


def test_empty_list_renders_the_empty_block() -> None:
    assert render(LIST, comments=[], counter=Counter()) == "none"
    assert render(LIST, comments=Comment.objects.none(), counter=Counter()) == "none"


def test_queryset_items_and_position_in_list_vary_forloop() -> None:
    comments = make_comments(2)
    counter = Counter()
    queryset = Comment.objects.order_by("pk")
    assert render(LIST, comments=queryset, counter=counter) == "[1/1F c0 r1][2/0L c1 r2]"
    # Same items, other order: each item's entry is reused as stored.
    reordered = list(reversed(comments))
    assert render(LIST, comments=reordered, counter=counter) == "[2/0L c1 r2][1/1F c0 r1]"


def test_vary_on_may_use_the_loop_variable() -> None:
    comments = make_comments(2)
    counter = Counter()
    source = (
        "{% cachesweeper_for c in comments 500 c.text lang %}"
        "{{ c.text }}{{ lang }}{{ counter.next }} {% endcachesweeper_for %}"
    )
    assert render(source, comments=comments, lang="en", counter=counter) == "c0en1 c1en2"
    assert render(source, comments=comments, lang="fr", counter=counter) == "c0fr3 c1fr4"
    assert render(source, comments=comments, lang="en", counter=counter) == "c0en1 c1en2"


def test_syntax_errors() -> None:
    from django.template import TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError, match="cachesweeper_for item in items"):
        render("{% cachesweeper_for c of comments 5 %}{% endcachesweeper_for %}")
    with pytest.raises(TemplateSyntaxError, match="cachesweeper_for item in items"):
        render("{% cachesweeper_for c in comments %}{% endcachesweeper_for %}")
