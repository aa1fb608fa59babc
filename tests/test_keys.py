"""Keys are valid on every backend, whatever goes into them; names are header-safe."""

from __future__ import annotations

import warnings

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import CacheKeyWarning

import cachesweeper
from cachesweeper.dependencies import encode, name_of
from cachesweeper.keys import make_key
from cachesweeper.tokens import token_key
from tests.helpers import Counter, missed_keys, reloaded, render
from tests.testapp.models import Article

HOSTILE = [
    "hello world",
    "ünïcødé ☃ 日本語",
    "line\nbreak\r\ttab",
    "\x00\x01\x7f control",
    "x" * 10_000,
    "",
    "a:b",
    "\ud800",  # a lone surrogate
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_vary_on_values_are_cached_and_kept_apart(value: str) -> None:
    article = Article.objects.create(title="t")
    counter = Counter()
    source = "{% cachesweeper article 500 value %}{{ counter.next }}{% endcachesweeper %}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        assert render(source, article=article, value=value, counter=counter) == "1"
        assert render(source, article=article, value=value, counter=counter) == "1"
        assert render(source, article=article, value=value + "!", counter=counter) == "2"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
@pytest.mark.parametrize("tag", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_tag_names_work_as_dependencies(tag: str) -> None:
    counter = Counter()
    source = "{% cachesweeper tag 500 %}{{ counter.next }}{% endcachesweeper %}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        assert render(source, tag=tag, counter=counter) == "1"
        assert render(source, tag=tag, counter=counter) == "1"
        cachesweeper.invalidate_tag(tag)
        assert render(source, tag=tag, counter=counter) == "2"


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_made_keys_are_short_printable_ascii(value: str) -> None:
    key = make_key("cs", "f", [value, value])
    assert len(key) <= 250
    assert key.isascii() and key.isprintable() and " " not in key


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_names_are_header_safe_and_distinct(value: str) -> None:
    name = encode(value)
    assert name and name.isascii() and name.isprintable()
    assert not set(name) & set(" ,;\"'\r\n\t")
    others = {encode(other) for other in HOSTILE if other != value}
    assert name not in others


def test_canonical_names() -> None:
    assert name_of(Article) == "testapp.article"
    assert name_of(Article(pk=42)) == "testapp.article.42"
    assert name_of("frontpage") == "frontpage"
    assert name_of("front page, 1") == "front%20page%2C%201"
    assert encode("%") == "%25" and encode("") == "%"
    with pytest.raises(TypeError, match="cannot depend on 3"):
        name_of(3)
    with pytest.raises(ValueError, match="is not saved"):
        name_of(Article())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
def test_a_tag_named_like_a_model_is_that_models_dependency() -> None:
    """One namespace of names, as on the edges: ``"testapp.article"`` *is* Article's name."""
    counter = Counter()
    on_tag = '{% cachesweeper "testapp.article" 500 %}t{{ counter.next }}{% endcachesweeper %}'
    on_model = "{% cachesweeper model 500 %}m{{ counter.next }}{% endcachesweeper %}"
    assert render(on_tag, counter=counter) == "t1"
    assert render(on_model, model=Article, counter=counter) == "m2"

    Article.objects.create(title="new")  # sweeps the model-level name
    assert render(on_tag, counter=counter) == "t3"

    cachesweeper.invalidate_tag("testapp.article")
    assert render(on_model, model=Article, counter=counter) == "m4"
    assert render(on_tag, counter=counter) == "t5"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
def test_tags_named_like_keys_touch_no_other_key() -> None:
    """Tag names are hashed into token keys: no tag overwrites an entry, a token or a site key."""
    cache = caches["default"]
    article = reloaded(Article.objects.create(title="t"))
    name = f"testapp.article.{article.pk}"
    counter = Counter()
    on_article = "{% cachesweeper article 500 %}a{{ counter.next }}{% endcachesweeper %}"
    with missed_keys() as keys:
        assert render(on_article, article=article, counter=counter) == "a1"
    (entry,) = keys
    cache.set("frontpage", "the site's own value", None)
    token = cache.get(token_key(name))

    tags = [entry, token_key(name), f"{entry}:lock", "frontpage", cache.make_key(entry)]
    on_tag = "{% cachesweeper tag 500 %}{{ counter.next }}{% endcachesweeper %}"
    for tag in tags:
        render(on_tag, tag=tag, counter=counter)
    cachesweeper.invalidate_tag(*tags)

    assert cache.get("frontpage") == "the site's own value"
    assert cache.get(token_key(name)) == token
    assert render(on_article, article=article, counter=counter) == "a1"
