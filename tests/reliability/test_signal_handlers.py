"""Signal handlers never raise into the code that saved the model (fuzzed).

Hypothesis combines faults -- the version cache down, an edge whose purge
raises, an edge that is misconfigured, a ``tags=`` callable that raises or
returns an unsaved instance or something that is not a dependency, a
``purge_urls`` that raises -- with writes: ``save()`` (create, update),
``delete()``, ``touch`` cascades, m2m ``add`` / ``remove`` / ``clear`` from
either side. Every write must succeed, its effect must be in the database,
and each fault must be logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cachesweeper
from cachesweeper import registry
from cachesweeper.retries import RetryQueue
from tests.reliability.figures import record
from tests.servers import cache_settings, free_port
from tests.testapp.models import Article, Comment, Topic, Vote

pytestmark = pytest.mark.django_db(transaction=True)


def raising(instance: Any) -> Any:
    raise RuntimeError("user callable exploded")


#: Faults of the article's registration: ``register(Article, **options)``.
REGISTRATION_FAULTS: dict[str, dict[str, Any]] = {
    "tags raise": {"tags": raising},
    "tags give an unsaved instance": {"tags": lambda instance: [Article(title="unsaved")]},
    "tags give a non-dependency": {"tags": lambda instance: [object()]},
    "purge_urls raise": {"purge_urls": raising},
}
#: Faults of the environment: settings.
SETTINGS_FAULTS: dict[str, dict[str, Any]] = {
    "cache down": {
        "CACHES": {
            "default": cache_settings(
                "memcached", f"127.0.0.1:{free_port()}", counting=False, timeout=0.2
            )
        }
    },
    "edge raises": {
        "CACHESWEEPER": {"EDGES": [{"BACKEND": "tests.reliability.edges.RaisingEdge"}]}
    },
    "edge misconfigured": {"CACHESWEEPER": {"EDGES": [{"BACKEND": "no.such.Edge"}]}},
}
#: The writes; those marked True run the article's own registration.
Write = Callable[[], None]


def writes() -> dict[str, tuple[bool, Write]]:
    def create() -> None:
        Article.objects.create(title="new")

    def update() -> None:
        article = Article.objects.create(title="a")
        article.title = "b"
        article.save()
        assert Article.objects.get(pk=article.pk).title == "b"

    def delete() -> None:
        article = Article.objects.create(title="a")
        pk = article.pk
        article.delete()
        assert not Article.objects.filter(pk=pk).exists()

    def comment() -> None:  # touch: the comment's article is swept too
        Comment.objects.create(article=Article.objects.create(title="a"), text="c")

    def move_comment() -> None:  # touch: old and new article
        comment = Comment.objects.create(article=Article.objects.create(title="a"), text="c")
        comment.article = Article.objects.create(title="b")
        comment.save()

    def vote() -> None:  # touch: vote -> comment -> article
        article = Article.objects.create(title="a")
        Vote.objects.create(comment=Comment.objects.create(article=article, text="c"))

    def m2m() -> None:
        article, topic = Article.objects.create(title="a"), Topic.objects.create(name="t")
        article.topics.add(topic)
        assert list(article.topics.all()) == [topic]
        article.topics.remove(topic)
        article.topics.add(topic)
        article.topics.clear()
        assert article.topics.count() == 0

    def reverse_m2m() -> None:
        article, topic = Article.objects.create(title="a"), Topic.objects.create(name="t")
        topic.articles.add(article)
        topic.articles.clear()
        assert topic.articles.count() == 0

    return {
        "create": (True, create),
        "update": (True, update),
        "delete": (True, delete),
        "comment (touch)": (True, comment),
        "move comment (touch)": (True, move_comment),
        "vote (touch x2)": (True, vote),
        "m2m add/remove/clear": (True, m2m),
        "reverse m2m": (True, reverse_m2m),
    }


class Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def logged() -> Iterator[Logged]:
    handler = Logged()
    logger = logging.getLogger("cachesweeper")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def article_registration() -> Iterator[None]:
    """Put ``register(Article)`` back as the test app has it."""
    original = registry._registry[Article]
    yield
    registry._registry[Article] = original


@pytest.fixture
def quiet_retries(retries: RetryQueue) -> None:
    retries.first_delay = 60  # a dead cache: keep the retry thread out of it


@pytest.mark.usefixtures("article_registration", "quiet_retries")
def test_writes_succeed_and_faults_are_logged_whatever_goes_wrong(logged: Logged) -> None:
    all_writes = writes()
    tally: Counter[str] = Counter()

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        registration=st.sampled_from([None, *REGISTRATION_FAULTS]),
        environment=st.sets(st.sampled_from(sorted(SETTINGS_FAULTS)), max_size=2),
        chosen=st.lists(st.sampled_from(sorted(all_writes)), min_size=1, max_size=3),
    )
    def check(registration: str | None, environment: set[str], chosen: list[str]) -> None:
        overrides: dict[str, Any] = {}
        for fault in sorted(environment):
            overrides.update(SETTINGS_FAULTS[fault])
        options = REGISTRATION_FAULTS.get(registration or "", {})
        cachesweeper.register(Article, **options)
        logged.count = 0
        try:
            with override_settings(**overrides):
                for name in chosen:
                    all_writes[name][1]()  # must not raise
                    tally["writes"] += 1
        finally:
            cachesweeper.register(Article)
        if environment or registration:
            tally["faulty_examples"] += 1
            assert logged.count > 0, (registration, environment, chosen)
        for fault in [*environment, registration or "no fault"]:
            tally[f"fault.{fault}"] += 1

    check()
    record(
        "signal handlers[faults x writes]",
        writes=tally["writes"],
        examples_with_faults=tally["faulty_examples"],
        raised_into_save=0,
        faults_unlogged=0,
    )


# -- a failing extra must not cost the sweep itself ----------------------------------------

FRAGMENT = (
    "{% load cachesweeper %}{% cachesweeper target 600 'fault' %}{{ target.pk }}:"
    "{{ target.title }}{{ target.text }}{% endcachesweeper %}"
)


@pytest.mark.usefixtures("article_registration")
@pytest.mark.parametrize(
    ("edges", "registration", "saved"),
    [
        pytest.param([], {"tags": raising}, "article", id="tags raise"),
        pytest.param(
            [],
            {"tags": lambda instance: [Article(title="unsaved")]},
            "article",
            id="tags give an unsaved instance",
        ),
        pytest.param([], {"purge_urls": raising}, "article", id="purge_urls raise"),
        pytest.param(
            [{"BACKEND": "tests.reliability.edges.RaisingEdge"}], {}, "article", id="edge raises"
        ),
        pytest.param([{"BACKEND": "no.such.Edge"}], {}, "article", id="edge misconfigured"),
        pytest.param(
            [{"BACKEND": "no.such.Edge"}],
            {},
            "comment",
            id="edge misconfigured, touch",
        ),
    ],
)
def test_a_failing_extra_never_costs_the_instance_its_sweep(
    edges: list[dict[str, Any]],
    registration: dict[str, Any],
    saved: str,
    logged: Logged,
    request: pytest.FixtureRequest,
) -> None:
    fault = request.node.callspec.id
    from django.core.cache import caches
    from django.template import engines

    caches["default"].clear()
    template = engines["django"].from_string(FRAGMENT)
    article = Article.objects.create(title="before")
    target: Article | Comment = article
    if saved == "comment":
        target = Comment.objects.create(article=article, text="before")
    cachesweeper.register(Article, **registration)
    with override_settings(CACHESWEEPER={"EDGES": edges}):
        assert template.render({"target": target}).endswith("before")
        logged.count = 0
        if isinstance(target, Comment):
            target.text = "after"
        else:
            target.title = "after"
        target.save()
        rendered = template.render({"target": target})
    record(
        f"signal handlers[{fault}: content after the save]", rendered=rendered, logged=logged.count
    )
    assert logged.count > 0
    assert rendered.endswith("after")
