"""Template-tree digests: a fragment's key follows the templates it includes or extends.

Editing a partial that a cached fragment includes (a deploy) gives the
fragment a new entry, for Django templates and Jinja2, recursively; the
digest depends on template contents only, never on where they are stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
from django.template import TemplateSyntaxError
from django.template.backends.django import DjangoTemplates
from django.template.backends.jinja2 import Jinja2
from django.template.loaders.locmem import Loader as LocmemLoader
from django.utils.autoreload import file_changed

from tests.helpers import Counter, calls, missed_keys, reloaded, reset
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

KINDS = ["django", "jinja2"]


class Site:
    """One template engine of either kind, its templates in a dict that tests edit."""

    def __init__(self, kind: str, templates: dict[str, str]) -> None:
        self.kind = kind
        self.templates = templates
        if kind == "django":
            self.backend: Any = DjangoTemplates(
                {
                    "NAME": "digests",
                    "DIRS": [],
                    "APP_DIRS": False,
                    "OPTIONS": {
                        "loaders": [("django.template.loaders.locmem.Loader", templates)],
                        "builtins": ["cachesweeper.templatetags.cachesweeper"],
                    },
                }
            )
        else:
            self.backend = Jinja2(
                {
                    "NAME": "digests-jinja2",
                    "DIRS": [],
                    "APP_DIRS": False,
                    "OPTIONS": {
                        "extensions": ["cachesweeper.jinja2.CacheSweeperExtension"],
                        "loader": jinja2.DictLoader(templates),
                        "auto_reload": True,
                    },
                }
            )

    def render(self, name: str = "page.html", **context: Any) -> str:
        return str(self.backend.get_template(name).render(context)).strip()


def tag(kind: str, arguments: str, keywords: str = "") -> str:
    """``{% cachesweeper article 600 "p" %}`` in the syntax of ``kind``."""
    if kind == "django":
        return "{% cachesweeper " + " ".join(arguments.split(", ")) + f" {keywords}" + " %}"
    return "{% cachesweeper " + arguments + (f", {keywords}" if keywords else "") + " %}"


def renders(kind: str) -> str:
    return "{{ counter.next }}" if kind == "django" else "{{ counter.next() }}"


def include(kind: str, name: str, condition: str = "") -> str:
    statement = f'{{% include "{name}" %}}'
    if not condition:
        return statement
    return f"{{% if {condition} %}}{statement}{{% endif %}}"


def reload_templates(path: str = "templates/_card.html") -> None:
    """What DEBUG's runserver does when a template file changes."""
    file_changed.send(sender=None, file_path=Path(path).resolve())


@pytest.fixture
def article() -> Article:
    return reloaded(Article.objects.create(title="Hello"))


def page(kind: str, body: str) -> str:
    return tag(kind, 'article, 600, "p"') + body + "{% endcachesweeper %}"


@pytest.mark.parametrize("kind", KINDS)
def test_editing_an_included_template_renders_the_fragment_anew(
    kind: str, article: Article
) -> None:
    site = Site(
        kind,
        {
            "page.html": page(kind, "<" + include(kind, "_card.html") + ">"),
            "_card.html": "{{ article.title }} v1 r" + renders(kind),
        },
    )
    counter = Counter()
    assert site.render(article=article, counter=counter) == "<Hello v1 r1>"
    assert site.render(article=article, counter=counter) == "<Hello v1 r1>"

    site.templates["_card.html"] = "{{ article.title }} v2 r" + renders(kind)
    reload_templates()

    assert site.render(article=article, counter=counter) == "<Hello v2 r2>"
    assert site.render(article=article, counter=counter) == "<Hello v2 r2>"


@pytest.mark.parametrize("kind", KINDS)
def test_templates_are_followed_recursively_through_includes_and_extends(
    kind: str, article: Article
) -> None:
    base_block = "{% block card %}{% endblock %}"
    site = Site(
        kind,
        {
            "page.html": page(kind, include(kind, "_outer.html")),
            "_outer.html": "[" + include(kind, "_inner.html") + "]",
            "_inner.html": '{% extends "_base.html" %}{% block card %}'
            "{{ article.title }} r" + renders(kind) + "{% endblock %}",
            "_base.html": "base1 " + base_block,
        },
    )
    counter = Counter()
    assert site.render(article=article, counter=counter) == "[base1 Hello r1]"
    assert site.render(article=article, counter=counter) == "[base1 Hello r1]"

    site.templates["_base.html"] = "base2 " + base_block
    reload_templates("templates/_base.html")

    assert site.render(article=article, counter=counter) == "[base2 Hello r2]"


@pytest.mark.parametrize("kind", KINDS)
def test_a_fragment_of_cachesweeper_for_follows_its_includes(kind: str, article: Article) -> None:
    if kind == "django":
        opening = '{% cachesweeper_for item in items 600 "i" %}'
    else:
        opening = '{% cachesweeper_for item in items, 600, "i" %}'
    site = Site(
        kind,
        {
            "page.html": opening + include(kind, "_item.html") + "{% endcachesweeper_for %}",
            "_item.html": "({{ item.title }} v1)",
        },
    )
    second = reloaded(Article.objects.create(title="World"))
    assert site.render(items=[article, second]) == "(Hello v1)(World v1)"

    site.templates["_item.html"] = "({{ item.title }} v2)"
    reload_templates("templates/_item.html")

    assert site.render(items=[article, second]) == "(Hello v2)(World v2)"


@pytest.mark.parametrize("kind", KINDS)
def test_editing_the_fragment_body_itself_renders_it_anew(kind: str, article: Article) -> None:
    site = Site(kind, {"page.html": page(kind, "{{ article.title }} v1")})
    assert site.render(article=article) == "Hello v1"

    site.templates["page.html"] = page(kind, "{{ article.title }} v2")
    reload_templates("templates/page.html")

    assert site.render(article=article) == "Hello v2"


@pytest.mark.parametrize("kind", KINDS)
def test_the_key_depends_on_contents_not_on_where_templates_are_stored(
    kind: str, article: Article, tmp_path: Path
) -> None:
    sources = {
        "page.html": page(kind, include(kind, "_card.html")),
        "_card.html": "{{ article.title }}",
    }
    for name, source in sources.items():
        (tmp_path / name).write_text(source)
    if kind == "django":
        on_disk: Any = DjangoTemplates(
            {
                "NAME": "on-disk",
                "DIRS": [tmp_path],
                "APP_DIRS": False,
                "OPTIONS": {"builtins": ["cachesweeper.templatetags.cachesweeper"]},
            }
        )
    else:
        on_disk = Jinja2(
            {
                "NAME": "on-disk-jinja2",
                "DIRS": [tmp_path],
                "APP_DIRS": False,
                "OPTIONS": {"extensions": ["cachesweeper.jinja2.CacheSweeperExtension"]},
            }
        )
    in_memory = Site(kind, dict(sources))

    with missed_keys() as first:
        assert in_memory.render(article=article) == "Hello"
    reset()
    # Another server, its templates elsewhere: the same entry, read in one round trip.
    assert on_disk.get_template("page.html").render({"article": article}).strip() == "Hello"
    assert calls() == ["get_many"]

    (tmp_path / "_card.html").write_text("{{ article.title }}!")
    reload_templates(str(tmp_path / "_card.html"))
    with missed_keys() as second:
        assert on_disk.get_template("page.html").render({"article": article}).strip() == ("Hello!")
    assert len(first) == len(second) == 1
    assert first != second


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_included_template_does_not_break_the_page(kind: str, article: Article) -> None:
    site = Site(
        kind,
        {
            "page.html": page(
                kind,
                include(kind, "_gone.html", "article.body")
                + include(kind, "_card.html")
                + " r"
                + renders(kind),
            ),
            "_card.html": "{{ article.title }}" + include(kind, "_also_gone.html", "article.body"),
        },
    )
    counter = Counter()

    assert site.render(article=article, counter=counter) == "Hello r1"
    assert site.render(article=article, counter=counter) == "Hello r1"


@pytest.mark.parametrize("kind", KINDS)
def test_templates_that_include_each_other_do_not_loop(kind: str, article: Article) -> None:
    if kind == "django":
        ping = '{% if depth %}ping {% include "_pong.html" with depth=0 %}{% endif %}'
        pong = 'pong{% if depth %}{% include "_ping.html" with depth=0 %}{% endif %}'
    else:
        ping = '{% if depth %}ping {% set depth = 0 %}{% include "_pong.html" %}{% endif %}'
        pong = 'pong{% if depth %}{% include "_ping.html" %}{% endif %}'
    site = Site(
        kind,
        {
            "page.html": page(kind, include(kind, "_ping.html") + " r" + renders(kind)),
            "_ping.html": ping,
            "_pong.html": pong,
        },
    )
    counter = Counter()
    assert site.render(article=article, counter=counter, depth=1) == "ping pong r1"
    assert site.render(article=article, counter=counter, depth=1) == "ping pong r1"

    site.templates["_pong.html"] = pong.replace("pong", "PONG", 1)
    reload_templates("templates/_pong.html")

    assert site.render(article=article, counter=counter, depth=1) == "ping PONG r2"


@pytest.mark.parametrize("kind", KINDS)
def test_templates_keyword_names_what_a_variable_includes(kind: str, article: Article) -> None:
    site = Site(
        kind,
        {
            "page.html": tag(kind, 'article, 600, "p"', 'templates="_card.html _other.html"')
            + "{% include card %}{% endcachesweeper %}",
            "_card.html": "{{ article.title }} v1",
        },
    )
    assert site.render(article=article, card="_card.html") == "Hello v1"
    assert site.render(article=article, card="_card.html") == "Hello v1"

    site.templates["_card.html"] = "{{ article.title }} v2"
    reload_templates()

    assert site.render(article=article, card="_card.html") == "Hello v2"


@pytest.mark.parametrize("kind", KINDS)
def test_templates_keyword_must_be_a_literal_string(kind: str) -> None:
    site = Site(
        kind,
        {"page.html": tag(kind, 'article, 600, "p"', "templates=names") + "{% endcachesweeper %}"},
    )
    error = TemplateSyntaxError if kind == "django" else jinja2.TemplateSyntaxError
    with pytest.raises((error, TemplateSyntaxError), match="literal string"):
        site.render(article=None, names="_card.html")


class CountingLoader(LocmemLoader):
    """Counts how often each template's source is read."""

    reads: dict[str, int] = {}

    def get_contents(self, origin: Any) -> str:
        CountingLoader.reads[origin.template_name] = (
            CountingLoader.reads.get(origin.template_name, 0) + 1
        )
        return str(super().get_contents(origin))


def test_an_included_template_is_digested_once_per_process(article: Article) -> None:
    CountingLoader.reads = {}
    cached = ("django.template.loaders.cached.Loader", [(f"{__name__}.CountingLoader", {})])
    backend = DjangoTemplates(
        {
            "NAME": "counting",
            "DIRS": [],
            "APP_DIRS": False,
            "OPTIONS": {
                "loaders": [cached],
                "builtins": ["cachesweeper.templatetags.cachesweeper"],
            },
        }
    )
    backend.engine.template_loaders[0].loaders[0].templates_dict.update(
        {"_card.html": "{{ article.title }}"}
    )
    for n in range(5):  # five templates, compiled anew, each including the partial
        source = page("django", f"{n}:" + include("django", "_card.html"))
        assert backend.from_string(source).render({"article": article}) == f"{n}:Hello"

    # Once compiled by Django's cached loader, once read for its digest.
    assert CountingLoader.reads == {"_card.html": 2}


@pytest.mark.parametrize("kind", KINDS)
def test_a_hit_with_includes_is_still_one_round_trip(kind: str, article: Article) -> None:
    templates = {"page.html": page(kind, include(kind, "_card.html"))}
    site = Site(kind, {**templates, "_card.html": "{{ article.title }}"})
    site.render(article=article)
    reset()

    assert site.render(article=article) == "Hello"

    assert calls() == ["get_many"]


@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_runserver_reloads_the_digests_of_an_edited_template_without_a_restart(
    kind: str, tmp_path: Path, article: Article
) -> None:
    from django.template import engines
    from django.test import override_settings
    from django.utils import autoreload

    (tmp_path / "page.html").write_text(page(kind, include(kind, "_card.html")))
    (tmp_path / "_card.html").write_text("{{ article.title }} v1")
    if kind == "django":
        backend = {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [tmp_path],
            "OPTIONS": {"builtins": ["cachesweeper.templatetags.cachesweeper"]},
        }
    else:
        backend = {
            "BACKEND": "django.template.backends.jinja2.Jinja2",
            "DIRS": [tmp_path],
            "OPTIONS": {"extensions": ["cachesweeper.jinja2.CacheSweeperExtension"]},
        }
    # DEBUG, as under runserver: Django's cached loader is reset on file_changed,
    # and Jinja2 reloads templates itself (auto_reload).
    with override_settings(DEBUG=True, TEMPLATES=[backend]):
        reloader = autoreload.StatReloader()
        autoreload.autoreload_started.send(sender=reloader)
        assert tmp_path in reloader.directory_globs  # watched, Jinja2 directories too

        def render() -> str:
            template = engines.all()[0].get_template("page.html")
            return str(template.render({"article": article})).strip()

        assert render() == "Hello v1"
        (tmp_path / "_card.html").write_text("{{ article.title }} v2")
        reloader.notify_file_changed(tmp_path / "_card.html")  # a restart would SystemExit

        assert render() == "Hello v2"
