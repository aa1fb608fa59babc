"""Russian-doll caching: an outer fragment depends on everything rendered inside it."""

from __future__ import annotations

import pytest

import cachesweeper
from tests.helpers import Counter, calls, reloaded, render, reset
from tests.testapp.models import Article, Comment, Note, Page, Vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

ARTICLE = (
    '{% cachesweeper article 500 "outer" %}<h1>{{ article.title }} o{{ counter.next }}</h1>'
    '{% cachesweeper_for comment in comments 500 "inner" %}'
    "<p>{{ comment.text }} v{{ comment.vote_total }} i{{ counter.next }}</p>"
    "{% endcachesweeper_for %}{% endcachesweeper %}"
)


def setup_article() -> tuple[Article, list[Comment]]:
    article = Article.objects.create(title="Hello")
    comments = [Comment.objects.create(article=article, text=f"c{i}") for i in range(2)]
    # Creating the comments swept the article (touch): load both as a request would.
    return reloaded(article), [reloaded(comment) for comment in comments]


def test_sweeping_an_inner_object_rerenders_the_outer_fragment() -> None:
    article, comments = setup_article()
    counter = Counter()
    first = render(ARTICLE, article=article, comments=comments, counter=counter)
    assert first == "<h1>Hello o1</h1><p>c0 v0 i2</p><p>c1 v0 i3</p>"

    # Only the comment is swept (no touch): the outer still sees it changed.
    cachesweeper.invalidate_cache_for(comments[0])

    assert render(ARTICLE, article=article, comments=comments, counter=counter) == (
        "<h1>Hello o4</h1><p>c0 v0 i5</p><p>c1 v0 i3</p>"
    )


def test_warm_nested_fragment_is_one_round_trip() -> None:
    article, comments = setup_article()
    render(ARTICLE, article=article, comments=comments, counter=Counter())
    render(ARTICLE, article=article, comments=comments, counter=Counter())
    reset()

    render(ARTICLE, article=article, comments=comments, counter=Counter())

    assert calls() == ["get_many"]


def test_vote_cascades_through_touch_to_outer_fragment() -> None:
    article, comments = setup_article()
    counter = Counter()
    render(ARTICLE, article=article, comments=comments, counter=counter)

    Vote.objects.create(comment=comments[1], value=3)

    assert render(ARTICLE, article=article, comments=comments, counter=counter) == (
        "<h1>Hello o4</h1><p>c0 v0 i2</p><p>c1 v3 i5</p>"
    )


def test_inner_attribute_strategy_still_invalidates_the_outer() -> None:
    page = Page.objects.create(title="About")
    counter = Counter()
    source = (
        '{% cachesweeper "site" 500 %}o{{ counter.next }} '
        "{% cachesweeper page 500 %}{{ page.title }} i{{ counter.next }}{% endcachesweeper %}"
        "{% endcachesweeper %}"
    )
    assert render(source, page=page, counter=counter) == "o1 About i2"
    assert render(source, page=page, counter=counter) == "o1 About i2"

    page.title = "About us"
    page.save()

    assert render(source, page=page, counter=counter) == "o3 About us i4"


def test_touch_in_attribute_mode_updates_the_target_row() -> None:
    page = Page.objects.create(title="About")
    before = page.updated_at
    counter = Counter()
    source = "{% cachesweeper page 500 %}{{ counter.next }}{% endcachesweeper %}"
    assert render(source, page=page, counter=counter) == "1"

    Note.objects.create(page=page, text="hi")

    page.refresh_from_db()
    assert page.updated_at > before
    assert render(source, page=page, counter=counter) == "2"


def test_an_inner_hit_inside_an_outer_miss_still_makes_the_outer_depend_on_it() -> None:
    """The collector learns names from hits too, not only from what rendered."""
    comment = reloaded(Comment.objects.create(article=Article.objects.create(title="a")))
    counter = Counter()
    source = (
        '{% cachesweeper "site" 500 version %}o{{ counter.next }} '
        "{% cachesweeper comment 500 %}i{{ counter.next }}{% endcachesweeper %}"
        "{% endcachesweeper %}"
    )
    assert render(source, comment=comment, version=1, counter=counter) == "o1 i2"
    # A new outer entry (another vary-on value) around an inner entry that is a hit.
    assert render(source, comment=comment, version=2, counter=counter) == "o3 i2"
    assert render(source, comment=comment, version=2, counter=counter) == "o3 i2"

    cachesweeper.invalidate_cache_for(comment)

    comment = reloaded(comment)
    assert render(source, comment=comment, version=2, counter=counter) == "o4 i5"


def test_first_nested_hit_in_a_fresh_process_costs_two_reads_then_one() -> None:
    """The inner names are only known from the outer entry: learnt on the first hit."""
    from cachesweeper import entries

    article, comments = setup_article()
    render(ARTICLE, article=article, comments=comments, counter=Counter())
    entries._known.clear()  # what a new process knows
    reset()

    render(ARTICLE, article=article, comments=comments, counter=Counter())
    assert calls() == ["get_many", "get_many"]
    reset()

    render(ARTICLE, article=article, comments=comments, counter=Counter())
    assert calls() == ["get_many"]
