"""``touch`` paths through reverse foreign keys and many-to-many relations, bounded."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import cachesweeper
from cachesweeper.tokens import token_key
from tests.helpers import COMMENT, Counter, registered, reloaded, render
from tests.testapp.models import Article, Author, Authorship, Comment, Page, Topic

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

BYLINE = (
    "{% cachesweeper article 500 %}{{ article.title }} by "
    "{% for a in article.authorships.all %}{{ a.author.name }} {% endfor %}"
    "{{ counter.next }}{% endcachesweeper %}"
)
TOPICS = (
    "{% cachesweeper article 500 %}{% for t in article.topics.all %}{{ t.name }} {% endfor %}"
    "{{ counter.next }}{% endcachesweeper %}"
)
ON_PAGE = "{% cachesweeper page 500 %}{{ page.title }} {{ counter.next }}{% endcachesweeper %}"
ALL_ARTICLES = (
    "{% cachesweeper articles 500 %}{{ articles|length }} {{ counter.next }}{% endcachesweeper %}"
)


def token(name: str) -> object:
    return caches["default"].get(token_key(name))


def test_an_author_edit_rerenders_the_articles_that_show_it_through_a_relationship() -> None:
    ada = Author.objects.create(name="Ada")
    article = Article.objects.create(title="Engines")
    other = Article.objects.create(title="Other")
    Authorship.objects.create(author=ada, article=article)
    counter = Counter()
    with registered(Author, touch=["authorships__article"]):
        assert render(BYLINE, article=article, counter=counter) == "Engines by Ada 1"
        assert render(BYLINE, article=other, counter=counter) == "Other by 2"

        ada.name = "Ada L."
        ada.save()

        assert render(BYLINE, article=reloaded(article), counter=counter) == "Engines by Ada L. 3"
        assert render(BYLINE, article=reloaded(other), counter=counter) == "Other by 2"


def test_a_path_is_resolved_with_one_query() -> None:
    ada = Author.objects.create(name="Ada")
    for title in ("a", "b", "c"):
        Authorship.objects.create(author=ada, article=Article.objects.create(title=title))
    with registered(Author, touch=["authorships__article"]):
        ada = Author.objects.get(pk=ada.pk)
        with CaptureQueriesContext(connection) as queries:
            ada.save()
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1


def test_deleting_the_source_sweeps_what_it_reached_before_the_cascade() -> None:
    """The authorships go with the author: the path is resolved at ``pre_delete``."""
    ada = Author.objects.create(name="Ada")
    article = Article.objects.create(title="Engines")
    Authorship.objects.create(author=ada, article=article)
    counter = Counter()
    with registered(Author, touch=["authorships__article"]):
        assert render(BYLINE, article=article, counter=counter) == "Engines by Ada 1"

        ada.delete()

        assert render(BYLINE, article=reloaded(article), counter=counter) == "Engines by 2"


def test_a_reverse_foreign_key_by_related_name_and_by_default_accessor() -> None:
    ada = Author.objects.create(name="Ada")
    article = Article.objects.create(title="Engines", author=ada)
    comment = Comment.objects.create(article=article, text="nice")
    byline = (
        "{% cachesweeper article 500 %}{{ article.author.name }} {{ counter.next }}"
        "{% endcachesweeper %}"
    )
    counter = Counter()
    with registered(Author, touch=["article_set"]):  # no related_name: the default accessor
        assert render(byline, article=article, counter=counter) == "Ada 1"
        ada.name = "Ada L."
        ada.save()
        assert render(byline, article=reloaded(article), counter=counter) == "Ada L. 2"

        ada.delete()  # SET_NULL: the article is reached before its author_id is cleared
        assert render(byline, article=reloaded(article), counter=counter) == "3"

    with registered(Article, touch=["comments"]):  # a related_name
        render(COMMENT, comment=comment, counter=counter)
        Article.objects.get(pk=article.pk).save()
        assert render(COMMENT, comment=reloaded(comment), counter=counter).endswith("rendered=5")


def test_a_many_to_many_path_either_way() -> None:
    topic = Topic.objects.create(name="django")
    article = Article.objects.create(title="a")
    article.topics.add(topic)
    counter = Counter()
    with registered(Topic, touch=["articles"]):  # the reverse side of Article.topics
        assert render(TOPICS, article=article, counter=counter) == "django 1"
        topic.name = "Django"
        topic.save()
        assert render(TOPICS, article=reloaded(article), counter=counter) == "Django 2"

    page = Page.objects.create(title="About")
    page.topics.add(topic)
    page = reloaded(page)
    with registered(Topic, touch=["pages"]):  # reverse, to an attribute-versioned model
        assert render(ON_PAGE, page=page, counter=counter) == "About 3"
        topic.save()  # moves the page's updated_at with one UPDATE
        assert render(ON_PAGE, page=reloaded(page), counter=counter) == "About 4"


def test_link_changes_sweep_what_a_path_through_the_link_reached() -> None:
    """Linked after an add, still linked before a remove or a clear."""
    topic = Topic.objects.create(name="django")
    article = Article.objects.create(title="a")
    comment = Comment.objects.create(article=article, text="c")
    counter = Counter()
    with registered(Topic, touch=["articles__comments"]):
        render(COMMENT, comment=comment, counter=counter)

        topic.articles.add(article)
        assert render(COMMENT, comment=reloaded(comment), counter=counter).endswith("rendered=2")

        topic.articles.remove(article)
        assert render(COMMENT, comment=reloaded(comment), counter=counter).endswith("rendered=3")

        article.topics.add(topic)  # from the other side
        assert render(COMMENT, comment=reloaded(comment), counter=counter).endswith("rendered=4")

        article.topics.clear()
        assert render(COMMENT, comment=reloaded(comment), counter=counter).endswith("rendered=5")


@override_settings(CACHESWEEPER={"INSTANCE_LIMIT": 2})
def test_a_path_from_a_moved_foreign_key_sweeps_the_old_target_too() -> None:
    """``comment.article`` moves from A to B: B's author is reached from the row, A's from
    the article the comment was loaded with."""
    ada, bob = Author.objects.create(name="Ada"), Author.objects.create(name="Bob")
    a = Article.objects.create(title="A", author=ada)
    b = Article.objects.create(title="B", author=bob)
    with registered(Comment, touch=["article", "article__author"]):
        comment = Comment.objects.create(article=a, text="moving")
        comment = Comment.objects.get(pk=comment.pk)
        ada_before = token(f"testapp.author.{ada.pk}")
        bob_before = token(f"testapp.author.{bob.pk}")
        comment.article = b
        comment.save()
        assert token(f"testapp.author.{bob.pk}") != bob_before
        assert token(f"testapp.author.{ada.pk}") != ada_before

        # Not moved: only the current author.
        ada_after = token(f"testapp.author.{ada.pk}")
        comment.text = "edited"
        comment.save()
        assert token(f"testapp.author.{ada.pk}") == ada_after


@override_settings(CACHESWEEPER={"INSTANCE_LIMIT": 2})
def test_past_the_limit_the_target_model_is_swept(caplog: pytest.LogCaptureFixture) -> None:
    ada = Author.objects.create(name="Ada")
    articles = [Article.objects.create(title=t) for t in ("a", "b", "c")]
    for article in articles:
        Authorship.objects.create(author=ada, article=article)
    counter = Counter()
    with registered(Author, touch=["authorships__article"]):
        assert render(ALL_ARTICLES, articles=Article.objects.all(), counter=counter) == "3 1"
        one = token(f"testapp.article.{articles[0].pk}")

        with caplog.at_level(logging.DEBUG, logger="cachesweeper"):
            ada.save()

        assert render(ALL_ARTICLES, articles=Article.objects.all(), counter=counter) == "3 2"
        assert token(f"testapp.article.{articles[0].pk}") == one  # not row by row
        assert "more than 2 Article rows: sweeping the model" in caplog.text

        # Within the limit, the rows are swept.
        Authorship.objects.filter(article=articles[2]).delete()
        ada.save()
        assert token(f"testapp.article.{articles[0].pk}") != one


@override_settings(CACHESWEEPER={"INSTANCE_LIMIT": 2})
def test_past_the_limit_attribute_versioned_targets_are_all_moved() -> None:
    """Their fragments compare the attribute, which a model sweep does not reach."""
    topic = Topic.objects.create(name="django")
    pages = [Page.objects.create(title=t) for t in ("a", "b", "c")]
    for page in pages:
        page.topics.add(topic)
    before = dict(Page.objects.values_list("pk", "updated_at"))
    with registered(Topic, touch=["pages"]):
        topic.save()
    after = dict(Page.objects.values_list("pk", "updated_at"))
    assert all(after[pk] > before[pk] for pk in before)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nope", r"register\(Author, touch=\['nope'\]\): Author has no field or accessor 'nope'"),
        (
            "authorships__nope",
            r"touch=\['authorships__nope'\]\): Authorship has no field or accessor 'nope'",
        ),
        ("authorships__role", r"Authorship.role is not a relation touch can follow"),
        ("authorships__", r"Authorship has no field or accessor ''"),
        ("name", r"Author.name is not a relation"),
    ],
)
def test_a_bad_path_is_refused_naming_the_model_and_the_segment(path: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        cachesweeper.register(Author, touch=[path])
