"""``{% cachesweeper_for %}``: one fragment per item, one read for the whole list.

The joined list is stored too, as a *list entry* against the tokens of all
its items: a list that has not changed is read as that entry and the items'
tokens (N + 1 keys, not 2N), and any change sends it back to the items.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.cache import caches

import cachesweeper
from cachesweeper import stats
from tests.helpers import Counter, calls, make_comments, reloaded, render, reset
from tests.testapp.models import Comment, Page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

LIST = (
    '{% cachesweeper_for comment in comments 500 "comment" %}'
    "[{{ forloop.counter }}/{{ forloop.revcounter0 }}{% if forloop.first %}F{% endif %}"
    "{% if forloop.last %}L{% endif %} {{ comment.text }} r{{ counter.next }}]"
    "{% empty %}none{% endcachesweeper_for %}"
)


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


def test_warm_list_reads_its_list_entry_and_one_token_per_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    comments = make_comments(50)
    render(LIST, comments=comments, counter=Counter())
    read: list[int] = []
    cache = caches["default"]
    original = cache.get_many

    def counted(keys: list[str], version: int | None = None) -> dict[str, Any]:
        read.append(len(keys))
        return original(keys, version=version)

    monkeypatch.setattr(cache, "get_many", counted)  # a wrapper on the object is read through

    render(LIST, comments=comments, counter=Counter())

    assert read == [51]


def test_swept_items_are_read_from_their_entries_and_written_in_one_set_many() -> None:
    comments = make_comments(50)
    render(LIST, comments=comments[:10], counter=Counter())  # creates the tokens of 10
    for comment in comments[:10]:
        cachesweeper.invalidate_cache_for(comment)
    comments = [reloaded(comment) for comment in comments]
    reset()

    render(LIST, comments=comments[:10], counter=Counter())

    # The list entry misses (1 read), the items are read (1), the ten re-rendered
    # items are written in one set_many, then the list entry.
    assert calls() == ["get_many", "get_many", "set_many", "set_many"]


def test_a_list_with_other_items_reuses_the_item_entries() -> None:
    comments = make_comments(4)
    counter = Counter()
    render(LIST, comments=comments[:3], counter=counter)

    # A new list (one item more): its list entry is new, three items are hits.
    assert render(LIST, comments=comments, counter=counter) == (
        "[1/2F c0 r1][2/1 c1 r2][3/0L c2 r3][4/0L c3 r4]"
    )
    reset()
    assert render(LIST, comments=comments, counter=counter).endswith("[4/0L c3 r4]")
    assert calls() == ["get_many"]


def test_sweeping_an_inner_dependency_invalidates_the_list_entry() -> None:
    comments = make_comments(3)
    counter = Counter()
    source = (
        "{% cachesweeper_for comment in comments 500 %}"
        "{% cachesweeper comment.article 500 %}{{ comment.article.title }}{% endcachesweeper %}"
        ":{{ counter.next }} {% endcachesweeper_for %}"
    )
    assert render(source, comments=comments, counter=counter) == "Hello:1 Hello:2 Hello:3"

    article = comments[0].article
    article.title = "Edited"
    article.save()
    comments = [reloaded(comment) for comment in comments]

    assert render(source, comments=comments, counter=counter) == "Edited:4 Edited:5 Edited:6"
    assert render(source, comments=comments, counter=counter) == "Edited:4 Edited:5 Edited:6"


def test_the_list_entry_never_outlives_its_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built from an item stored earlier, the list expires when that item does."""
    comments = make_comments(2)
    counter = Counter()
    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    first = (
        "{% cachesweeper_for comment in comments 100 %}"
        "{{ comment.text }}{{ counter.next }} {% endcachesweeper_for %}"
    )
    # One item: no list entry.
    assert render(first, comments=comments[:1], counter=counter) == "c01"

    clock[0] += 60
    assert render(first, comments=comments, counter=counter) == "c01 c12"  # list entry stored
    assert render(first, comments=comments, counter=counter) == "c01 c12"

    clock[0] += 50  # c0's entry (100 s, stored 110 s ago) is over; the list's must be too
    assert render(first, comments=comments, counter=counter) == "c03 c12"


def test_items_with_attribute_tokens_need_no_list_entry() -> None:
    pages = [Page.objects.create(title=f"p{i}") for i in range(3)]
    source = "{% cachesweeper_for page in pages 500 %}{{ page.title }} {% endcachesweeper_for %}"
    render(source, pages=pages)
    reset()

    assert render(source, pages=pages) == "p0 p1 p2"
    assert calls() == ["get_many"]


def test_a_list_hit_counts_every_item_as_a_hit() -> None:
    comments = make_comments(3)
    render(LIST, comments=comments, counter=Counter())
    stats.reset()

    render(LIST, comments=comments, counter=Counter())

    assert stats.snapshot()["hits"] == 3
    assert stats.snapshot()["misses"] == 0


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
