"""Rendering outside a request (a task, a command, a shell), with counter tokens.

Content is stored against the tokens it read. An instance loaded *before* a
sweep of something it depends on may hold older data than that token, so
what it renders is shown but not stored; loaded again, it is stored. Inside a
request the request's start plays this part (``tests/reliability``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

import cachesweeper
from tests.helpers import Counter, calls, reloaded, render, reset
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

ON_ARTICLE = (
    '{% cachesweeper article 300 "task" %}{{ article.title }} {{ counter.next }}'
    "{% endcachesweeper %}"
)
ON_ARTICLES = (
    '{% cachesweeper articles 300 "task" %}{% for article in articles %}{{ article.title }};'
    "{% endfor %} {{ counter.next }}{% endcachesweeper %}"
)
OUTER = (
    '{% cachesweeper "sidebar" 300 %}[{% cachesweeper article 300 "inner" %}{{ article.title }}'
    "{% endcachesweeper %}] {{ counter.next }}{% endcachesweeper %}"
)


def saved_elsewhere(pk: int, title: str) -> None:
    """Another worker loads the row, changes it and saves it (which sweeps it)."""
    article = Article.objects.get(pk=pk)
    article.title = title
    article.save()


def test_an_instance_loaded_before_a_sweep_is_rendered_but_not_stored() -> None:
    pk = reloaded(Article.objects.create(title="old")).pk
    counter = Counter()
    article = Article.objects.get(pk=pk)
    saved_elsewhere(pk, "new")

    # What the instance holds is shown...
    assert render(ON_ARTICLE, article=article, counter=counter) == "old 1"
    # ...but not kept under the new token: loaded again, the new title is stored.
    assert render(ON_ARTICLE, article=Article.objects.get(pk=pk), counter=counter) == "new 2"
    assert render(ON_ARTICLE, article=Article.objects.get(pk=pk), counter=counter) == "new 2"


def test_the_instance_that_was_saved_holds_what_it_committed() -> None:
    article = Article.objects.create(title="one")
    counter = Counter()
    article.title = "two"
    article.save()

    assert render(ON_ARTICLE, article=article, counter=counter) == "two 1"
    assert render(ON_ARTICLE, article=article, counter=counter) == "two 1"


def test_a_partial_save_does_not_vouch_for_the_other_fields() -> None:
    article = Article.objects.create(title="one", body="b")
    saved_elsewhere(article.pk, "changed elsewhere")
    counter = Counter()
    article.body = "new body"
    article.save(update_fields=["body"])

    # The instance still holds the title it was loaded with: shown, never stored.
    assert render(ON_ARTICLE, article=article, counter=counter) == "one 1"
    assert render(ON_ARTICLE, article=article, counter=counter) == "one 2"
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "changed elsewhere 3"


def test_an_evaluated_queryset_loaded_before_a_sweep_is_not_stored() -> None:
    pk = Article.objects.create(title="old").pk
    counter = Counter()
    articles = Article.objects.filter(pk=pk)
    list(articles)  # evaluated now
    saved_elsewhere(pk, "new")

    assert render(ON_ARTICLES, articles=articles, counter=counter) == "old; 1"
    assert render(ON_ARTICLES, articles=Article.objects.filter(pk=pk), counter=counter) == (
        "new; 2"
    )


def test_a_lazy_queryset_loads_inside_the_fragment_and_is_stored() -> None:
    pk = Article.objects.create(title="old").pk
    counter = Counter()
    articles = Article.objects.filter(pk=pk)
    saved_elsewhere(pk, "new")

    assert render(ON_ARTICLES, articles=articles, counter=counter) == "new; 1"
    assert render(ON_ARTICLES, articles=Article.objects.filter(pk=pk), counter=counter) == (
        "new; 1"
    )


def test_an_outer_fragment_does_not_keep_what_an_inner_one_could_not() -> None:
    pk = Article.objects.create(title="old").pk
    counter = Counter()
    article = Article.objects.get(pk=pk)
    saved_elsewhere(pk, "new")

    assert render(OUTER, article=article, counter=counter) == "[old] 1"
    assert render(OUTER, article=Article.objects.get(pk=pk), counter=counter) == "[new] 2"
    assert render(OUTER, article=Article.objects.get(pk=pk), counter=counter) == "[new] 2"


def test_the_load_time_is_when_the_query_ran_not_when_the_instance_was_built() -> None:
    """A sweep that lands between the query and building the instance still counts."""
    pk = reloaded(Article.objects.create(title="a")).pk
    counter = Counter()

    def sweep_after_the_query_ran(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if sql.lstrip().upper().startswith("SELECT"):
            # Another worker commits and sweeps while these rows wait to be built.
            other = threading.Thread(
                target=cachesweeper.invalidate_cache_for, args=[Article(pk=pk)]
            )
            other.start()
            other.join()
        return result

    with connection.execute_wrapper(sweep_after_the_query_ran):
        article = Article.objects.get(pk=pk)

    assert render(ON_ARTICLE, article=article, counter=counter) == "a 1"
    assert render(ON_ARTICLE, article=article, counter=counter) == "a 2"  # not stored
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "a 3"
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "a 3"


def test_execute_wrappers_of_the_project_keep_working() -> None:
    seen: list[str] = []

    def spy(execute: Any, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(spy):
        Article.objects.create(title="a")
    Article.objects.count()

    assert len(seen) == 1
    assert spy not in connection.execute_wrappers


LIST = (
    '{% cachesweeper_for article in articles 300 "items" %}{{ article.title }} '
    "{{ counter.next }};{% endcachesweeper_for %}"
)


def test_a_list_item_loaded_before_a_sweep_of_its_own_is_not_stored_the_others_are() -> None:
    first, second, third = (Article.objects.create(title=title) for title in "abc")
    first, second, third = reloaded(first), reloaded(second), reloaded(third)
    counter = Counter()
    saved_elsewhere(second.pk, "B")

    # The stale item is shown as it was loaded, and neither it nor the list is kept...
    assert render(LIST, articles=[first, second, third], counter=counter) == "a 1;b 2;c 3;"
    # ...so loaded again it renders anew; the items that were current stayed cached.
    assert render(LIST, articles=[first, reloaded(second), third], counter=counter) == (
        "a 1;B 4;c 3;"
    )
    assert render(LIST, articles=[first, reloaded(second), third], counter=counter) == (
        "a 1;B 4;c 3;"
    )


def test_a_sweep_of_another_item_does_not_keep_an_item_from_being_stored() -> None:
    first = reloaded(Article.objects.create(title="a"))  # loaded before the next sweep
    second = Article.objects.create(title="b")  # swept after ``first`` was loaded
    counter = Counter()

    assert render(LIST, articles=[first, second], counter=counter) == "a 1;b 2;"
    reset()

    assert render(LIST, articles=[first, second], counter=counter) == "a 1;b 2;"
    assert calls() == ["get_many"]  # the list entry was stored too
