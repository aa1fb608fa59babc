"""Precise list invalidation: a QuerySet depends on the rows it selects, not the table.

``article.comments.all()`` depends on the field dependency "comments whose
``article`` is 5", ``testapp.comment.article=5``, not on every comment of the
site. A write sweeps the field dependencies of the row's old and new values,
so a comment moved from one article to another re-renders both lists, and a
comment on a third article neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path

import cachesweeper
from cachesweeper.dependencies import field_name, resolve, tag_name
from cachesweeper.edges import queue
from tests.edges.recording import RecordingEdge
from tests.helpers import Counter, registered, render
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

LIST = (
    "{% cachesweeper comments 600 %}{{ comments|length }} #{{ counter.next }}{% endcachesweeper %}"
)


def names(obj: Any) -> list[str]:
    """What ``obj`` depends on, without the every-row name a field dependency comes with."""
    return [dep.name for dep in resolve(obj) if not dep.name.endswith(".*")]


@pytest.fixture
def articles() -> tuple[Article, Article]:
    return Article.objects.create(title="A"), Article.objects.create(title="B")


class Shown:
    """A list fragment on one QuerySet, rendered again on demand: how often did it render?"""

    def __init__(self, queryset: Any) -> None:
        self.queryset, self.counter = queryset, Counter()

    def render(self) -> str:
        return render(LIST, comments=self.queryset.all(), counter=self.counter)


def test_the_names(articles: tuple[Article, Article]) -> None:
    a, _ = articles
    assert names(a.comments.all()) == [f"testapp.comment.article={a.pk}"]
    # Also every row of the model: what invalidate_model() (or a touch past its limit) sweeps.
    assert [dep.name for dep in resolve(a.comments.all())][-1] == "testapp.comment.*"
    assert names(Comment.objects.filter(article_id=a.pk)) == [f"testapp.comment.article={a.pk}"]
    assert names(Comment.objects.filter(article__in=[1, 2])) == [
        "testapp.comment.article=1",
        "testapp.comment.article=2",
    ]
    field = Comment._meta.get_field("article")
    assert field_name(field, None) == "testapp.comment.article="
    # "=" is encoded in every other name: a tag spelled like a field dependency is not one.
    assert tag_name(f"testapp.comment.article={a.pk}") == f"testapp.comment.article%3D{a.pk}"


@pytest.mark.parametrize(
    "queryset",
    [
        lambda a: Comment.objects.exclude(article=a),
        lambda a: Comment.objects.filter(article__gt=a.pk),
        lambda a: Comment.objects.filter(article__title="A"),
        lambda a: Comment.objects.filter(article=a) | Comment.objects.filter(text="x"),
        lambda a: Comment.objects.filter(article__in=range(50)),
        lambda a: Comment.objects.filter(text="x"),  # not a tracked field
    ],
    ids=["exclude", "range", "through a join", "or", "many values", "untracked field"],
)
def test_what_it_cannot_read_depends_on_the_model(
    articles: tuple[Article, Article], queryset: Any
) -> None:
    assert names(queryset(articles[0])) == ["testapp.comment"]


def test_a_comment_on_another_article_leaves_the_list_alone(
    articles: tuple[Article, Article],
) -> None:
    a, b = articles
    shown = Shown(a.comments)
    assert shown.render() == "0 #1"
    Comment.objects.create(article=b, text="on B")
    assert shown.render() == "0 #1"


def test_created_edited_moved_and_deleted_comments_reach_both_sides(
    articles: tuple[Article, Article],
) -> None:
    a, b = articles
    on_a, on_b = Shown(a.comments), Shown(b.comments)
    assert (on_a.render(), on_b.render()) == ("0 #1", "0 #1")

    comment = Comment.objects.create(article=a, text="first")
    assert (on_a.render(), on_b.render()) == ("1 #2", "0 #1")

    comment.text = "edited"
    comment.save()
    assert (on_a.render(), on_b.render()) == ("1 #3", "0 #1")

    comment.article = b  # moved: away from A, onto B
    comment.save()
    assert (on_a.render(), on_b.render()) == ("0 #4", "1 #2")

    comment.delete()
    assert (on_a.render(), on_b.render()) == ("0 #4", "0 #3")


def test_a_row_built_in_memory_has_its_old_values_read(articles: tuple[Article, Article]) -> None:
    a, b = articles
    comment = Comment.objects.create(article=a, text="first")
    on_a = Shown(a.comments)
    assert on_a.render() == "1 #1"
    Comment(pk=comment.pk, article=b, text="moved without loading it").save()
    assert on_a.render() == "0 #2"


def test_a_tracked_field_that_is_not_a_foreign_key(articles: tuple[Article, Article]) -> None:
    a, b = articles
    with registered(Comment, touch=["article"], fields=("article", "status")):
        drafts = Comment.objects.filter(status="draft")
        assert names(drafts) == ["testapp.comment.status=draft"]
        # Both tracked: the foreign key is taken.
        both = Comment.objects.filter(status="published", article=a)
        assert names(both) == [f"testapp.comment.article={a.pk}"]

        shown = Shown(drafts)
        assert shown.render() == "0 #1"
        published = Comment.objects.create(article=b, text="live")
        assert shown.render() == "0 #1"
        published.status = "draft"
        published.save()
        assert shown.render() == "1 #2"


def test_fields_can_be_turned_off(articles: tuple[Article, Article]) -> None:
    a, b = articles
    with registered(Comment, touch=["article"], fields=()):
        assert names(a.comments.all()) == ["testapp.comment"]
        shown = Shown(a.comments)
        assert shown.render() == "0 #1"
        Comment.objects.create(article=b, text="on B")
        assert shown.render() == "0 #2"


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"fields=\['nope'\]\): Comment has no"):
        cachesweeper.register(Comment, fields=("nope",))


def test_invalidate_queryset_sweeps_the_field_dependencies_of_the_rows(
    articles: tuple[Article, Article],
) -> None:
    a, b = articles
    Comment.objects.create(article=a, text="one")
    on_a, on_b = Shown(a.comments), Shown(b.comments)
    assert (on_a.render(), on_b.render()) == ("1 #1", "0 #1")
    with transaction.atomic():
        rows = Comment.objects.filter(article=a)
        cachesweeper.invalidate_queryset(rows)  # the old values
        rows.update(article=b)
        cachesweeper.invalidate_queryset(Comment.objects.filter(article=b))  # the new ones
    assert (on_a.render(), on_b.render()) == ("0 #2", "1 #2")


# -- pages and edges ---------------------------------------------------------------


def comments_page(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(f"{Comment.objects.filter(article_id=pk).count()} comments #{next(PAGES)}")


def _pages() -> Iterator[int]:
    number = 0
    while True:
        number += 1
        yield number


PAGES = _pages()
urlpatterns = [
    path("counted/<int:pk>/", cachesweeper.cache_page(60)(comments_page)),
    path(
        "tagged/<int:pk>/",
        cachesweeper.cache_page(
            60, tags=[lambda request, pk: Comment.objects.filter(article_id=pk)]
        )(comments_page),
    ),
]
EDGE_SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": __name__,
    "MIDDLEWARE": ["cachesweeper.middleware.EdgeMiddleware"],
    "CACHESWEEPER": {"EDGES": [{"BACKEND": "tests.edges.recording.RecordingEdge"}]},
}


@pytest.mark.parametrize("kind", ["counted", "tagged"])
def test_a_page_is_swept_by_a_comment_on_its_article_only(
    articles: tuple[Article, Article], kind: str
) -> None:
    """``counted``: the page's own query is read (``cachesweeper.loads``); ``tagged``: the
    QuerySet is its tag. Both depend on the field dependency, at the edge too."""
    a, b = articles
    with override_settings(**EDGE_SETTINGS):
        client = Client()
        first = client.get(f"/{kind}/{a.pk}/")
        assert f"testapp.comment.article={a.pk}" in first["X-Test-Tags"].split()
        assert "testapp.comment" not in first["X-Test-Tags"].split()
        assert client.get(f"/{kind}/{a.pk}/").content == first.content

        RecordingEdge.reset()
        Comment.objects.create(article=b, text="on B")
        assert client.get(f"/{kind}/{a.pk}/").content == first.content
        assert queue.purges.flush(5)
        assert f"testapp.comment.article={a.pk}" not in RecordingEdge.names()

        Comment.objects.create(article=a, text="on A")
        assert client.get(f"/{kind}/{a.pk}/").content.startswith(b"1 comments")
        assert queue.purges.flush(5)
        assert f"testapp.comment.article={a.pk}" in RecordingEdge.names()


# -- the other ways rows change ----------------------------------------------------


@pytest.mark.parametrize("load", ["only", "defer"])
def test_a_deferred_foreign_key_still_sweeps_its_old_value(
    articles: tuple[Article, Article], load: str
) -> None:
    """The old value is loaded before the save (one query), never guessed."""
    a, b = articles
    comment = Comment.objects.create(article=a, text="first")
    on_a, on_b = Shown(a.comments), Shown(b.comments)
    assert (on_a.render(), on_b.render()) == ("1 #1", "0 #1")
    queryset = Comment.objects.all()
    loaded = queryset.only("text") if load == "only" else queryset.defer("article")
    deferred = loaded.get(pk=comment.pk)
    deferred.article = b
    deferred.save()
    assert (on_a.render(), on_b.render()) == ("0 #2", "1 #2")

    again = Comment.objects.only("text").get(pk=comment.pk)
    again.text = "edited, article not loaded"
    again.save()  # the article did not change: B's list is swept, A's is not
    assert (on_a.render(), on_b.render()) == ("0 #2", "1 #3")

    doomed = Comment.objects.only("text").get(pk=comment.pk)
    doomed.delete()
    assert (on_a.render(), on_b.render()) == ("0 #2", "0 #4")


def test_bulk_create_then_invalidate_queryset(articles: tuple[Article, Article]) -> None:
    a, b = articles
    on_a, on_b = Shown(a.comments), Shown(b.comments)
    assert (on_a.render(), on_b.render()) == ("0 #1", "0 #1")
    with transaction.atomic():
        made = Comment.objects.bulk_create(Comment(article=a, text=f"c{n}") for n in range(3))
        cachesweeper.invalidate_queryset(Comment.objects.filter(pk__in=[c.pk for c in made]))
    assert (on_a.render(), on_b.render()) == ("3 #2", "0 #1")


def test_an_m2m_change_sweeps_the_lists_its_rows_are_in() -> None:
    """Articles listed by author: a topic added to one of them re-renders that list only."""
    from tests.testapp.models import Author, Topic

    ada, bob = Author.objects.create(name="Ada"), Author.objects.create(name="Bob")
    mine = Article.objects.create(title="mine", author=ada)
    Article.objects.create(title="theirs", author=bob)
    topic = Topic.objects.create(name="django")
    source = (
        "{% cachesweeper articles 600 %}{% for a in articles %}{{ a.title }}:"
        "{{ a.topics.count }} {% endfor %}#{{ counter.next }}{% endcachesweeper %}"
    )
    by_ada, by_bob, ada_counter, bob_counter = (
        Article.objects.filter(author=ada),
        Article.objects.filter(author=bob),
        Counter(),
        Counter(),
    )
    assert names(by_ada) == [f"testapp.article.author={ada.pk}"]
    assert render(source, articles=by_ada.all(), counter=ada_counter) == "mine:0 #1"
    assert render(source, articles=by_bob.all(), counter=bob_counter) == "theirs:0 #1"
    mine.topics.add(topic)
    assert render(source, articles=by_ada.all(), counter=ada_counter) == "mine:1 #2"
    assert render(source, articles=by_bob.all(), counter=bob_counter) == "theirs:0 #1"


def test_an_attribute_versioned_model_sweeps_its_field_dependencies() -> None:
    """``Page`` keeps its token in ``updated_at``; its field dependencies are counters."""
    from tests.testapp.models import Page

    with registered(Page, using="updated_at", fields=("title",)):
        home, about = Page.objects.create(title="home"), Page.objects.create(title="about")
        homes = Page.objects.filter(title="home")
        assert names(homes) == ["testapp.page.title=home"]
        counter = Counter()
        source = (
            "{% cachesweeper pages 600 %}{{ pages|length }} #{{ counter.next }}"
            "{% endcachesweeper %}"
        )
        assert render(source, pages=homes.all(), counter=counter) == "1 #1"
        about.save()
        assert render(source, pages=homes.all(), counter=counter) == "1 #1"
        home.title = "start"
        home.save()
        assert render(source, pages=homes.all(), counter=counter) == "0 #2"


def test_a_new_row_costs_no_query_for_old_values(articles: tuple[Article, Article]) -> None:
    a, _ = articles
    with CaptureQueriesContext(connection) as queries:
        Comment.objects.create(article=a, text="new")
    on_comments = [q["sql"] for q in queries if "testapp_comment" in q["sql"]]
    assert len(on_comments) == 1  # the INSERT alone
    assert on_comments[0].startswith("INSERT")


def test_invalidate_model_reaches_lists_on_field_dependencies(
    articles: tuple[Article, Article],
) -> None:
    a, _ = articles
    shown = Shown(a.comments)
    assert shown.render() == "0 #1"
    cachesweeper.invalidate_model(Comment)
    assert shown.render() == "0 #2"
