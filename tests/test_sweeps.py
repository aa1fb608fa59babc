"""Sweeps: after commit, de-duplicated, through register(), touch, m2m and bulk writes."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import cachesweeper
from cachesweeper import registry
from cachesweeper.tokens import token_key
from cachesweeper.utils import invalidate_cache_handler
from tests.helpers import (
    COMMENT,
    Counter,
    calls,
    missed_keys,
    registered,
    reloaded,
    render,
    reset,
    ttl_of,
)
from tests.testapp.models import (
    Article,
    Author,
    Bistro,
    Comment,
    Legacy,
    Page,
    Restaurant,
    Topic,
    Vote,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

ON_ARTICLE = (
    "{% cachesweeper article 500 %}{{ article.title }}{{ counter.next }}{% endcachesweeper %}"
)


def token(name: str) -> object:
    return caches["default"].get(token_key(name))


def test_sweep_inside_a_transaction_waits_for_commit() -> None:
    article = Article.objects.create(title="a")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)

    before = token(f"testapp.article.{article.pk}")

    with transaction.atomic():
        article.title = "b"
        article.save()
        # Not committed yet: the token has not moved, so no other reader can
        # cache pre-commit data under a new token (this transaction sees its
        # own write: see test_own_writes.py).
        assert token(f"testapp.article.{article.pk}") == before

    assert token(f"testapp.article.{article.pk}") != before
    assert render(ON_ARTICLE, article=article, counter=counter) == "b2"


def test_rollback_sweeps_nothing() -> None:
    article = Article.objects.create(title="a")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)
    before = token(f"testapp.article.{article.pk}")

    with pytest.raises(RuntimeError), transaction.atomic():
        article.save()
        raise RuntimeError("rolled back")

    assert token(f"testapp.article.{article.pk}") == before
    assert render(ON_ARTICLE, article=article, counter=counter) == "a1"

    # The next transaction still sweeps.
    with transaction.atomic():
        article.save()
    assert render(ON_ARTICLE, article=article, counter=counter) == "a2"


def test_savepoint_rollback_then_commit_still_sweeps() -> None:
    article = Article.objects.create(title="a")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)

    with transaction.atomic():
        try:
            with transaction.atomic():
                Article.objects.create(title="other")
                raise RuntimeError
        except RuntimeError:
            pass
        article.save()

    assert render(ON_ARTICLE, article=article, counter=counter) == "a2"


def test_sweeps_in_one_transaction_are_deduplicated() -> None:
    article = Article.objects.create(title="a")
    render(ON_ARTICLE, article=article, counter=Counter())
    reset()

    with transaction.atomic():
        for _ in range(5):
            article.save()

    # One write of fresh tokens for the instance and the model, not five.
    assert calls() == ["set_many"]


def test_a_sweep_is_one_round_trip() -> None:
    article = Article.objects.create(title="a")
    render(ON_ARTICLE, article=article, counter=Counter())
    reset()

    cachesweeper.invalidate_cache_for(article)

    assert calls() == ["set_many"]


def test_missing_counter_is_recreated_from_a_random_seed() -> None:
    article = Article.objects.create(title="a")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)
    name = f"testapp.article.{article.pk}"
    old = token(name)
    assert isinstance(old, int) and old > 2**32

    caches["default"].delete(token_key(name))  # evicted, or the server restarted

    # A missing token is a miss, and the new counter is a fresh value, never 0 or 1.
    assert render(ON_ARTICLE, article=article, counter=counter) == "a2"
    new = token(name)
    assert isinstance(new, int) and new > 2**32 and new != old


@pytest.mark.parametrize("origin", ["created", "swept"])
def test_eviction_never_brings_back_older_content(origin: str) -> None:
    """The old entry is still in the cache when its counter goes: it must never match again.

    The entry is stored against a counter made by ``add()`` (first read) or
    by a sweep; either way, the counter made after the eviction must differ.
    """
    article = Article.objects.create(title="old")
    name = f"testapp.article.{article.pk}"
    if origin == "created":
        caches["default"].delete(token_key(name))  # the first render creates it
    else:
        cachesweeper.invalidate_cache_for(article)
    counter = Counter()
    with missed_keys() as keys:
        assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "old1"
    (key,) = keys
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "old1"

    # The row changes without a sweep reaching the cache, and the counter is evicted
    # (or the version cache restarted) while the entry built from the old row survives.
    Article.objects.filter(pk=article.pk).update(title="new")
    caches["default"].delete(token_key(name))
    assert caches["default"].get(key) is not None

    # The recreated counter matches no token an old entry was stored with.
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "new2"
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "new2"


def test_register_touch_cascades_vote_to_comment_to_article() -> None:
    article = Article.objects.create(title="Hello")
    comment = Comment.objects.create(article=article, text="c")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)
    render(COMMENT, comment=comment, counter=counter)

    Vote.objects.create(comment=comment)

    assert render(ON_ARTICLE, article=article, counter=counter) == "Hello3"
    assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=4")


def test_touch_in_counter_mode_writes_nothing_to_the_database() -> None:
    article = Article.objects.create(title="Hello")
    comment = Comment.objects.create(article=article, text="c")
    with CaptureQueriesContext(connection) as queries:
        Comment.objects.filter(pk=comment.pk).get().save()
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1  # the comment's own UPDATE; the article is swept by token


def test_moving_a_foreign_key_sweeps_the_old_and_the_new_target() -> None:
    first = Article.objects.create(title="first")
    second = Article.objects.create(title="second")
    comment = Comment.objects.create(article=first, text="c")
    counter = Counter()
    render(ON_ARTICLE, article=first, counter=counter)
    render(ON_ARTICLE, article=second, counter=counter)

    comment = Comment.objects.get(pk=comment.pk)
    comment.article = second
    comment.save()

    assert render(ON_ARTICLE, article=first, counter=counter) == "first3"
    assert render(ON_ARTICLE, article=second, counter=counter) == "second4"


def test_delete_sweeps() -> None:
    article = Article.objects.create(title="Hello")
    comment = Comment.objects.create(article=article, text="c")
    counter = Counter()
    render(ON_ARTICLE, article=article, counter=counter)

    comment.delete()

    assert render(ON_ARTICLE, article=article, counter=counter) == "Hello2"


def test_m2m_changes_sweep_both_sides() -> None:
    article = Article.objects.create(title="Hello")
    topic = Topic.objects.create(name="django")
    counter = Counter()
    on_topic = "{% cachesweeper topic 500 %}t{{ counter.next }}{% endcachesweeper %}"
    render(ON_ARTICLE, article=article, counter=counter)
    render(on_topic, topic=topic, counter=counter)

    article.topics.add(topic)

    assert render(ON_ARTICLE, article=article, counter=counter) == "Hello3"
    assert render(on_topic, topic=topic, counter=counter) == "t4"

    topic.articles.clear()

    assert render(ON_ARTICLE, article=article, counter=counter) == "Hello5"


def test_m2m_changes_rerender_attribute_versioned_fragments_on_both_sides() -> None:
    """A link added or removed saves neither row: their ``updated_at`` is moved for them."""
    page = Page.objects.create(title="About")
    topic = Topic.objects.create(name="django")
    counter = Counter()
    source = (
        "{% cachesweeper page 500 %}{% for t in page.topics.all %}{{ t.name }} {% endfor %}"
        "{{ counter.next }}{% endcachesweeper %}"
    )
    assert render(source, page=page, counter=counter) == "1"

    page.topics.add(topic)
    assert render(source, page=reloaded(page), counter=counter) == "django 2"

    topic.pages.remove(page)  # from the other side (Topic is a counter model)
    assert render(source, page=reloaded(page), counter=counter) == "3"

    topic.pages.add(page)
    page = reloaded(page)
    assert render(source, page=page, counter=counter) == "django 4"
    topic.pages.clear()
    assert render(source, page=reloaded(page), counter=counter) == "5"


def test_invalidate_queryset_for_bulk_writes() -> None:
    articles = [Article.objects.create(title=f"a{i}") for i in range(3)]
    counter = Counter()
    for article in articles:
        render(ON_ARTICLE, article=article, counter=counter)

    queryset = Article.objects.filter(pk__in=[articles[0].pk, articles[1].pk])
    cachesweeper.invalidate_queryset(queryset)
    queryset.update(title="bulk")

    refreshed = {a.pk: a for a in Article.objects.all()}
    assert render(ON_ARTICLE, article=refreshed[articles[0].pk], counter=counter) == "bulk4"
    assert render(ON_ARTICLE, article=refreshed[articles[1].pk], counter=counter) == "bulk5"
    assert render(ON_ARTICLE, article=refreshed[articles[2].pk], counter=counter) == "a23"


ON_PAGE = "{% cachesweeper page 500 %}{{ page.title }}{{ counter.next }}{% endcachesweeper %}"


def updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]


def test_invalidate_cache_for_attribute_strategy_updates_the_row() -> None:
    page = Page.objects.create(title="p")
    counter = Counter()
    assert render(ON_PAGE, page=page, counter=counter) == "p1"
    Page.objects.filter(pk=page.pk).update(title="q")  # no signal, updated_at unchanged
    before = page.updated_at

    cachesweeper.invalidate_cache_for(page)

    page = reloaded(page)
    assert page.updated_at > before
    assert render(ON_PAGE, page=page, counter=counter) == "q2"


def test_invalidate_queryset_on_an_attribute_model_rerenders_its_fragments() -> None:
    """Its fragments compare ``updated_at``: the rows' attribute moves, in one UPDATE."""
    pages = [Page.objects.create(title=f"p{i}") for i in range(3)]
    counter = Counter()
    outer = '{% cachesweeper "site" 500 %}[' + ON_PAGE + "]{% endcachesweeper %}"
    for page in pages:
        render(ON_PAGE, page=page, counter=counter)
    assert render(outer, page=pages[0], counter=counter) == "[p01]"  # inner: a hit

    queryset = Page.objects.filter(pk__in=[pages[0].pk, pages[1].pk])
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        queryset.update(title="bulk")
        cachesweeper.invalidate_queryset(queryset)
    assert len(updates(queries)) == 2  # the bulk write's and the sweep's

    fresh = {page.pk: page for page in Page.objects.all()}
    assert render(ON_PAGE, page=fresh[pages[0].pk], counter=counter) == "bulk4"
    assert render(ON_PAGE, page=fresh[pages[1].pk], counter=counter) == "bulk5"
    assert render(ON_PAGE, page=fresh[pages[2].pk], counter=counter) == "p23"
    assert render(outer, page=fresh[pages[0].pk], counter=counter) == "[bulk4]"


def test_invalidate_queryset_on_a_counter_model_writes_nothing() -> None:
    article = Article.objects.create(title="a")
    with CaptureQueriesContext(connection) as queries:
        cachesweeper.invalidate_queryset(Article.objects.filter(pk=article.pk))
    assert updates(queries) == []


def test_a_counter_sweep_of_an_attribute_model_is_refused() -> None:
    """A counter bump cannot reach fragments that compare ``updated_at``: say so, loudly."""
    page = Page.objects.create(title="p")
    counter = Counter()
    render(ON_PAGE, page=page, counter=counter)
    reset()

    with pytest.raises(ValueError, match="versioned by its 'updated_at' attribute"):
        cachesweeper.invalidate_cache_for(page, using="counter")
    assert calls() == []


def test_invalidate_cache_for_using_an_attribute_on_a_counter_model() -> None:
    """Moves the attribute (one UPDATE) and bumps the counter its fragments compare."""
    with registered(Page):  # counters for Page, whose row has an updated_at to move
        page = Page.objects.create(title="p")
        counter = Counter()
        page = reloaded(page)
        assert render(ON_PAGE, page=page, counter=counter) == "p1"
        before = page.updated_at

        with CaptureQueriesContext(connection) as queries:
            cachesweeper.invalidate_cache_for(page, using="updated_at")

        assert len(updates(queries)) == 1
        page = reloaded(page)
        assert page.updated_at > before
        assert render(ON_PAGE, page=page, counter=counter) == "p2"


def test_original_invalidate_cache_for_import_path() -> None:
    from cachesweeper.utils import invalidate_cache_for

    article = Article.objects.create(title="a")
    counter = Counter()
    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "a1"

    invalidate_cache_for(article)

    assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "a2"


def test_default_using_setting_versions_models_by_their_attribute() -> None:
    """``USING = "updated_at"``: models that have it need no token; the others use counters."""
    with registered(Page), override_settings(CACHESWEEPER={"USING": "updated_at"}):
        page = Page.objects.create(title="About")
        article = Article.objects.create(title="Hello")
        comment = Comment.objects.create(article=article, text="c")
        counter = Counter()
        assert render(ON_PAGE, page=page, counter=counter) == "About1"
        reset()
        assert render(ON_PAGE, page=page, counter=counter) == "About1"
        assert calls() == ["get"]  # the entry only: the token is the attribute

        page.title = "About us"
        page.save()
        assert render(ON_PAGE, page=page, counter=counter) == "About us2"

        # Article has no updated_at: counters, and touch still reaches it.
        article = reloaded(article)
        assert render(ON_ARTICLE, article=article, counter=counter) == "Hello3"
        Vote.objects.create(comment=comment)
        article = reloaded(article)
        assert render(ON_ARTICLE, article=article, counter=counter) == "Hello4"
        cachesweeper.invalidate_cache_for(article)
        assert render(ON_ARTICLE, article=reloaded(article), counter=counter) == "Hello5"


ON_TAGS = (
    '{% cachesweeper "menu" 500 %}m{{ counter.next }}{% endcachesweeper %} '
    '{% cachesweeper "footer" 500 %}f{{ counter.next }}{% endcachesweeper %}'
)


def test_register_tags_list_sweeps_those_tags_on_save_and_delete() -> None:
    with registered(Topic, tags=["menu"]):
        counter = Counter()
        assert render(ON_TAGS, counter=counter) == "m1 f2"
        assert render(ON_TAGS, counter=counter) == "m1 f2"

        topic = Topic.objects.create(name="django")
        assert render(ON_TAGS, counter=counter) == "m3 f2"

        topic.delete()
        assert render(ON_TAGS, counter=counter) == "m4 f2"


def test_register_tags_callable_sweeps_the_instances_tags() -> None:
    with registered(Topic, tags=lambda topic: [f"topic-{topic.name}"]):
        counter = Counter()
        source = "{% cachesweeper tag 500 %}{{ tag }}{{ counter.next }}{% endcachesweeper %}"
        Topic.objects.create(name="django")
        assert render(source, tag="topic-django", counter=counter) == "topic-django1"
        assert render(source, tag="topic-flask", counter=counter) == "topic-flask2"

        Topic.objects.get(name="django").save()

        assert render(source, tag="topic-django", counter=counter) == "topic-django3"
        assert render(source, tag="topic-flask", counter=counter) == "topic-flask2"


def test_original_invalidate_cache_handler_receiver() -> None:
    author = Author.objects.create(name="Ann")
    counter = Counter()
    source = (
        "{% cachesweeper author 500 %}{{ author.name }}{{ counter.next }}{% endcachesweeper %}"
    )
    render(source, author=author, counter=counter)

    post_save.connect(invalidate_cache_handler, sender=Author)
    try:
        author.name = "Bea"
        author.save()
    finally:
        post_save.disconnect(invalidate_cache_handler, sender=Author)

    assert render(source, author=author, counter=counter) == "Bea2"


def test_model_sweeper_mixin_sweeps_the_saved_instance() -> None:
    first = Legacy.objects.create(text="one")
    second = Legacy.objects.create(text="two")
    counter = Counter()
    source = "{% cachesweeper obj 500 %}{{ obj.text }}{{ counter.next }}{% endcachesweeper %}"
    render(source, obj=first, counter=counter)
    render(source, obj=second, counter=counter)

    second.text = "deux"
    second.save()

    assert render(source, obj=first, counter=counter) == "one1"
    assert render(source, obj=second, counter=counter) == "deux3"

    # Deleting sweeps the deleted instance (a stand-in with its pk re-renders), only it.
    pk = second.pk
    second.delete()
    assert render(source, obj=Legacy(pk=pk, text="gone"), counter=counter) == "gone4"
    assert render(source, obj=first, counter=counter) == "one1"


def test_register_rejects_a_touch_that_is_not_a_foreign_key() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="Vote has no field or accessor 'nope'"):
        cachesweeper.register(Vote, touch=["nope"])
    with pytest.raises(ImproperlyConfigured, match="ForeignKey or OneToOneField"):
        cachesweeper.register(Vote, touch=["value"])


def test_counters_are_stored_without_expiry(cache_backend: str) -> None:
    """Pitfall: ``timeout=0`` means "do not store" since Django 1.6; counters use ``None``.

    Both ways a counter is written: bumped by a sweep (``set_many``), and
    created with ``add()`` when a fragment first meets a dependency.
    """
    article = Article.objects.create(title="a")  # register() sweeps: a bumped counter
    source = "{% cachesweeper deps 500 %}{{ counter.next }}{% endcachesweeper %}"
    reset()
    render(source, deps=[article, "never-swept"], counter=Counter())
    assert "add" in calls()  # the tag's counter did not exist: created with add()

    for name in (f"testapp.article.{article.pk}", "never-swept"):
        assert isinstance(token(name), int)
        assert ttl_of(cache_backend, token_key(name)) is None, name


ON_RESTAURANT = "{% cachesweeper obj 500 %}{{ obj.name }}{{ counter.next }}{% endcachesweeper %}"


def test_a_save_of_ignored_fields_only_sweeps_nothing() -> None:
    """Restaurant is registered with ``ignore_fields=("visits", "owner_id")``."""
    restaurant = Restaurant.objects.create(name="a")
    author = Author.objects.create(name="o")
    counter = Counter()
    assert render(ON_RESTAURANT, obj=restaurant, counter=counter) == "a1"
    before = token(f"testapp.restaurant.{restaurant.pk}")

    restaurant.visits += 1
    restaurant.save(update_fields=["visits"])
    restaurant.owner = author
    restaurant.save(update_fields=["owner", "visits"])  # a field name or its attname

    assert token(f"testapp.restaurant.{restaurant.pk}") == before
    assert render(ON_RESTAURANT, obj=reloaded(restaurant), counter=counter) == "a1"


def test_a_save_of_an_ignored_and_a_shown_field_sweeps() -> None:
    restaurant = Restaurant.objects.create(name="a")
    counter = Counter()
    render(ON_RESTAURANT, obj=restaurant, counter=counter)

    restaurant.name, restaurant.visits = "b", 5
    restaurant.save(update_fields=["name", "visits"])
    assert render(ON_RESTAURANT, obj=reloaded(restaurant), counter=counter) == "b2"

    restaurant = reloaded(restaurant)
    restaurant.visits = 6
    restaurant.save()  # a full save writes every field: it sweeps
    assert render(ON_RESTAURANT, obj=reloaded(restaurant), counter=counter) == "b3"


def test_ignore_fields_apply_to_a_child_that_inherits_the_registration() -> None:
    bistro = Bistro.objects.create(name="a")
    before = token(f"testapp.place.{bistro.pk}")
    bistro.visits = 1
    bistro.save(update_fields=["visits"])
    assert token(f"testapp.place.{bistro.pk}") == before


def test_register_rejects_an_unknown_ignored_field() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=r"register\(Topic, ignore_fields=\['nmae'\]\)"):
        cachesweeper.register(Topic, ignore_fields=["nmae"])
    with pytest.raises(ImproperlyConfigured, match="Article has no concrete field 'topics'"):
        cachesweeper.register(Article, ignore_fields=["topics"])  # many-to-many: no column
    assert registry.registration_for(Topic) == registry.Registration()  # left as it was
