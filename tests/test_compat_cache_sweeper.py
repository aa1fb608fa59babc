"""Code written for the original django-cache-sweeper runs with only its import line changed.

The models in ``tests/testapp/original_site.py`` are wired as the original's
README and example app wired theirs (a ``ModelSweeper`` mixin, ``post_save``
receivers calling ``invalidate_cache_for``, the ready-made
``invalidate_cache_handler``), and the templates below use the original's tag
library and syntax. Each test shows what a visitor would see: the cached
fragment until something it shows is saved, the new content right after.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.template import engines

from tests.helpers import reloaded
from tests.testapp.original_site import OldArticle, OldComment, OldReply, OldVote

pytestmark = pytest.mark.django_db(transaction=True)

# The original README's fragment, minus its markdown filter and URLs.
COMMENT = """{% load cachesweeper_tags %}
{% cachesweeper comment 500 "comment.xml" %}
<p>{{ comment.content }} Like ({{ comment.likes }}) votes={{ comment.votes.count }}
replies={% for reply in comment.replies.all %}{{ reply.content }};{% endfor %}</p>
{% endcachesweeper %}"""

ARTICLE = """{% load cachesweeper_tags %}
{% cachesweeper article 500 "article.html" %}<h1>{{ article.title }}</h1>{% endcachesweeper %}"""


def show(source: str, **context: Any) -> str:
    """What the visitor gets: the template rendered, whitespace squeezed."""
    return " ".join(engines["django"].from_string(source).render(context).split())


def page_of(comment: OldComment) -> str:
    """The comment fragment as the next request renders it (the comment loaded anew)."""
    return show(COMMENT, comment=reloaded(comment))


@pytest.fixture
def comment(cache_backend: str) -> OldComment:
    """A saved comment on an article; each test using it runs on every cache backend."""
    article = OldArticle.objects.create(title="Hello")
    return reloaded(OldComment.objects.create(article=article, content="First!"))


def test_the_original_import_line_works() -> None:
    from cachesweeper import models, utils
    from cachesweeper.utils import (  # noqa: F401
        ModelSweeper,
        invalidate_cache_for,
        invalidate_cache_handler,
    )

    assert models.ModelSweeper is utils.ModelSweeper is ModelSweeper


def test_a_project_app_listed_before_cachesweeper_imports_the_original_line() -> None:
    """A project's ``models.py`` imports ``cachesweeper.utils`` while apps are loading.

    Its app comes first in ``INSTALLED_APPS`` here, so cachesweeper's own app
    is not even loaded yet when the import runs.
    """
    program = """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                    "tests.testapp", "cachesweeper"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
django.setup()
from tests.testapp.original_site import OldComment
print(OldComment._meta.label)
"""
    root = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHONPATH": str(root)}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "testapp.OldComment"


def test_the_fragment_is_served_from_the_cache_until_the_comment_is_saved(
    comment: OldComment,
) -> None:
    assert page_of(comment) == "<p>First! Like (0) votes=0 replies=</p>"

    # A write that sends no signal: the cached fragment is what visitors still see.
    OldComment.objects.filter(pk=comment.pk).update(content="Edited quietly")
    assert page_of(comment) == "<p>First! Like (0) votes=0 replies=</p>"

    # The original's own test: like it, save it, the fragment shows the new count.
    comment = reloaded(comment)
    comment.like_it()
    comment.save()  # ModelSweeper.save sweeps it
    assert page_of(comment) == "<p>Edited quietly Like (1) votes=0 replies=</p>"


def test_another_comment_stays_cached(comment: OldComment) -> None:
    other = reloaded(OldComment.objects.create(article=comment.article, content="Second"))
    assert page_of(other) == "<p>Second Like (0) votes=0 replies=</p>"
    OldComment.objects.filter(pk=other.pk).update(likes=7)

    comment.like_it()
    comment.save()

    assert page_of(other) == "<p>Second Like (0) votes=0 replies=</p>"
    assert page_of(comment) == "<p>First! Like (1) votes=0 replies=</p>"


def test_a_vote_sweeps_its_comment_through_the_readmes_receiver(comment: OldComment) -> None:
    assert page_of(comment) == "<p>First! Like (0) votes=0 replies=</p>"

    OldVote.objects.create(comment=comment)  # invalidate_vote_cache -> invalidate_cache_for

    assert page_of(comment) == "<p>First! Like (0) votes=1 replies=</p>"


def test_the_ready_made_handler_sweeps_what_was_saved(comment: OldComment) -> None:
    """``post_save.connect(invalidate_cache_handler, sender=...)`` sweeps the saved reply."""
    reply = OldReply.objects.create(comment=comment, content="Agreed")
    fragment = """{% load cachesweeper_tags %}
{% cachesweeper reply 500 "reply" %}{{ reply.content }}{% endcachesweeper %}"""
    assert show(fragment, reply=reloaded(reply)) == "Agreed"
    OldReply.objects.filter(pk=reply.pk).update(content="Quiet edit")
    assert show(fragment, reply=reloaded(reply)) == "Agreed"

    reply = reloaded(reply)
    reply.content = "Disagreed"
    reply.save()

    assert show(fragment, reply=reloaded(reply)) == "Disagreed"


def test_an_article_swept_using_its_updated_at(comment: OldComment) -> None:
    """The README's ``invalidate_cache_for(article, using='updated_at')`` receiver."""
    article = reloaded(comment.article)
    assert show(ARTICLE, article=article) == "<h1>Hello</h1>"
    OldArticle.objects.filter(pk=article.pk).update(title="Quiet")
    assert show(ARTICLE, article=reloaded(article)) == "<h1>Hello</h1>"

    article = reloaded(article)
    article.title = "Hello again"
    article.save()

    assert show(ARTICLE, article=reloaded(article)) == "<h1>Hello again</h1>"


def test_sweep_method_of_the_mixin(comment: OldComment) -> None:
    """The original mixin's ``instance.sweep()``, for writes that bypass ``save()``."""
    assert page_of(comment) == "<p>First! Like (0) votes=0 replies=</p>"
    OldComment.objects.filter(pk=comment.pk).update(likes=5)
    assert page_of(comment) == "<p>First! Like (0) votes=0 replies=</p>"

    comment.sweep()

    assert page_of(comment) == "<p>First! Like (5) votes=0 replies=</p>"
