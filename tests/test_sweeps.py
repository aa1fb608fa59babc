"""Sweeps: after commit, de-duplicated, through register(), touch, m2m and bulk writes."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import transaction
from django.db.models.signals import post_save

import cachesweeper
from cachesweeper.tokens import token_key
from cachesweeper.utils import invalidate_cache_handler
from tests.helpers import calls, render, reset
from tests.test_fragments import COMMENT, Counter
from tests.testapp.models import Article, Author, Comment, Legacy, Topic, Vote

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

    with transaction.atomic():
        article.title = "b"
        article.save()
        # Not committed yet: a reader still gets the old entry, and can't cache
        # pre-commit data under a new token.
        assert render(ON_ARTICLE, article=article, counter=counter) == "a1"

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


def test_eviction_never_brings_back_older_content() -> None:
    article = Article.objects.create(title="old")
    counter = Counter()
    name = f"testapp.article.{article.pk}"
    assert render(ON_ARTICLE, article=article, counter=counter) == "old1"

    # Many sweeps later, the counter is evicted; it must not restart anywhere
    # near the value the old entry was stored with.
    article.title = "new"
    article.save()
    assert render(ON_ARTICLE, article=article, counter=counter) == "new2"
    for _ in range(3):
        caches["default"].delete(token_key(name))
        assert render(ON_ARTICLE, article=article, counter=counter).startswith("new")


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
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

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


def test_invalidate_cache_for_attribute_strategy_updates_the_row() -> None:
    from tests.testapp.models import Page

    page = Page.objects.create(title="p")
    before = page.updated_at
    cachesweeper.invalidate_cache_for(page)
    page.refresh_from_db()
    assert page.updated_at > before


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

    second.delete()
    second.pk = Legacy.objects.create(text="again").pk - 1  # the deleted row's pk
    assert render(source, obj=first, counter=counter) == "one1"


def test_register_rejects_a_touch_that_is_not_a_foreign_key() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="has no field 'nope'"):
        cachesweeper.register(Vote, touch=["nope"])
    with pytest.raises(ImproperlyConfigured, match="ForeignKey or OneToOneField"):
        cachesweeper.register(Vote, touch=["value"])


def test_counters_are_stored_without_expiry(cache_backend: str) -> None:
    """Pitfall: ``timeout=0`` means "do not store" since Django 1.6; counters use ``None``."""
    article = Article.objects.create(title="a")
    render(ON_ARTICLE, article=article, counter=Counter())
    cache = caches["default"]
    key = cache.make_key(token_key(f"testapp.article.{article.pk}"))
    assert isinstance(cache.get(token_key(f"testapp.article.{article.pk}")), int)

    if cache_backend == "locmem":
        assert cache._expire_info[key] is None  # type: ignore[attr-defined]
    elif cache_backend == "memcached":
        from django.conf import settings
        from pymemcache.client.base import Client

        host, port = settings.CACHES["default"]["LOCATION"].rsplit(":", 1)
        client = Client((host, int(port)))
        assert client.raw_command(f"mg {key} t".encode(), b"\r\n") == b"HD t-1"
        client.close()
    elif cache_backend == "django_redis":
        ttl = cache.ttl(token_key(f"testapp.article.{article.pk}"))  # type: ignore[attr-defined]
        assert ttl is None
    else:
        assert cache._cache.get_client(key).ttl(key) == -1  # type: ignore[attr-defined]
