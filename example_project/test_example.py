"""End-to-end test of the example blog: the flow a person clicking through would see.

Run it with ``pytest example_project/test_example.py`` (from the repository root).

The example has its own settings module, which cannot share a process with the
library's test settings, so everything Django-related runs in subprocesses against a
throw-away SQLite database (``EXAMPLE_DB``): ``manage.py check``, ``manage.py
migrate`` (which also seeds the demo data) and this very file run as a script
(``--flow``), which drives the blog with Django's test client and prints, as JSON,
what each page's footer reported. The assertions run here, in pytest.

Fragments are recognised the way a reader of the footer would: by their dependency
names. The per-comment fragments depend on ``blog.comment.N``; the article's two
fragments ("detail", then "comments") both depend on ``blog.article.N`` and are told
apart by their order on the page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLE_DIR.parent
ARTICLE_SLUG = "why-key-based-expiry"  # seeded by blog/migrations/0002_demo_data.py
RESULT_MARKER = "FLOW-RESULT:"

Event = dict[str, Any]  # {"status": "hit", "key": "...", "deps": ["blog.article.1"]}


# --------------------------------------------------------------------------- page parsing
# Used by the subprocess (on HTML) - kept here so the whole check reads as one file.


class _FooterParser(HTMLParser):
    """Collects the footer rows: <tr class="fragment ..." data-status data-key data-deps>."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr" and "data-status" in attributes:
            self.events.append(
                {
                    "status": attributes["data-status"],
                    "key": attributes.get("data-key") or "",
                    "deps": (attributes.get("data-deps") or "").split(),
                }
            )


def parse_events(html: str) -> list[Event]:
    parser = _FooterParser()
    parser.feed(html)
    return parser.events


def parse_scores(html: str) -> dict[str, int]:
    """Vote total shown for each comment, by comment pk (a str: the result goes through JSON)."""
    pattern = re.compile(r'id="comment-(\d+)".*?<span class="score">(-?\d+)</span>', re.S)
    return {pk: int(score) for pk, score in pattern.findall(html)}


def parse_messages(html: str) -> list[str]:
    block = re.search(r'<ul class="messages">(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", block.group(1), re.S) if block else []


# --------------------------------------------------------------------------- the flow
# Runs in a subprocess with the example's settings: `python test_example.py --flow`.


def run_flow() -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    import django

    django.setup()
    from django.apps import apps
    from django.test import Client
    from django.test.utils import setup_test_environment

    Article = apps.get_model("blog", "Article")
    setup_test_environment()  # lets the test client's "testserver" host through
    client = Client()
    article = Article.objects.get(slug=ARTICLE_SLUG)
    detail_url = article.get_absolute_url()
    comment_pks = list(article.comments.values_list("pk", flat=True))
    voted = comment_pks[1]
    pages: dict[str, Any] = {}

    def visit(name: str, path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        html = response.content.decode()
        pages[name] = {
            "events": parse_events(html),
            "scores": parse_scores(html),
            "messages": parse_messages(html),
            "html": html,
        }

    def post(path: str, data: dict[str, str]) -> None:
        response = client.post(path, data)
        assert response.status_code == 302, (path, response.status_code)

    visit("list_first", "/")
    visit("first", detail_url)
    visit("second", detail_url)
    post(f"/comments/{voted}/vote/", {"value": "1"})
    visit("after_vote", detail_url)
    visit("settled", detail_url)
    post(f"{detail_url}comment/", {"author_name": "Test", "body": "A brand-new comment."})
    new_comment = article.comments.order_by("-pk").values_list("pk", flat=True).first()
    visit("after_comment", detail_url)
    post(f"{detail_url}edit/", {"title": "Edited title", "body": "Edited body."})
    visit("list_after_edit", "/")
    visit("after_edit", detail_url)

    return {
        "article_pk": article.pk,
        "comment_pks": comment_pks,
        "voted": voted,
        "new_comment": new_comment,
        "pages": pages,
    }


# --------------------------------------------------------------------------- pytest side


def _env(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CACHESWEEPER_CACHE", None)  # LocMem: no servers needed
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    env["DJANGO_DEBUG"] = "1"
    env["EXAMPLE_DB"] = str(db)
    # The package is normally pip-installed (-e .); the repository root is a fallback.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO_ROOT)) if p)
    return env


def _run(args: Sequence[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _flow(tmp_path_factory: Any) -> dict[str, Any]:
    env = _env(tmp_path_factory.mktemp("example") / "db.sqlite3")
    _run(["manage.py", "check", "--fail-level", "WARNING"], env)
    _run(["manage.py", "migrate", "--noinput"], env)
    out = _run([str(Path(__file__).resolve()), "--flow"], env)
    line = next(line for line in out.splitlines() if line.startswith(RESULT_MARKER))
    result: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
    return result


def _roles(events: list[Event], article_pk: int) -> dict[str, str]:
    """Map fragment role -> status: "detail", "comments", "list", "comment:<pk>"."""
    roles: dict[str, str] = {}
    article_fragments = iter(["detail", "comments"])
    for event in events:
        deps = event["deps"]
        if f"blog.article.{article_pk}" in deps:
            role = next(article_fragments, "extra-article-fragment")
        elif comments := [d for d in deps if d.startswith("blog.comment.")]:
            assert len(comments) == 1, event
            role = "comment:" + comments[0].rsplit(".", 1)[1]
        elif "blog.article" in deps:
            role = "list"
        else:
            role = "unknown:" + " ".join(deps)
        assert role not in roles, f"{role} looked up twice on one page: {events}"
        roles[role] = event["status"]
    return roles


def _keys(events: list[Event], article_pk: int) -> list[str]:
    return [e["key"] for e in events if f"blog.article.{article_pk}" in e["deps"]]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: Any) -> dict[str, Any]:
    return _flow(tmp_path_factory)


def test_first_view_misses_everything(flow: dict[str, Any]) -> None:
    roles = _roles(flow["pages"]["first"]["events"], flow["article_pk"])
    expected = {"detail": "miss", "comments": "miss"}
    expected |= {f"comment:{pk}": "miss" for pk in flow["comment_pks"]}
    assert roles == expected


def test_second_view_hits_and_skips_nested_fragments(flow: dict[str, Any]) -> None:
    # The comment list hit, so the per-comment fragments inside it are never looked up.
    roles = _roles(flow["pages"]["second"]["events"], flow["article_pk"])
    assert roles == {"detail": "hit", "comments": "hit"}
    first, second = (flow["pages"][p]["events"] for p in ("first", "second"))
    assert _keys(first, flow["article_pk"]) == _keys(second, flow["article_pk"])


def test_vote_sweeps_its_comment_and_article_only(flow: dict[str, Any]) -> None:
    page = flow["pages"]["after_vote"]
    roles = _roles(page["events"], flow["article_pk"])
    voted = flow["voted"]
    assert roles.pop("detail") != "hit"  # swept via vote -> comment -> article (touch)
    assert roles.pop("comments") == "miss"
    assert roles.pop(f"comment:{voted}") == "miss"
    assert roles == {f"comment:{pk}": "hit" for pk in flow["comment_pks"] if pk != voted}
    # ... and the re-rendered fragment shows the new total.
    before = flow["pages"]["first"]["scores"][str(voted)]
    assert page["scores"][str(voted)] == before + 1


def test_vote_reports_what_it_swept(flow: dict[str, Any]) -> None:
    messages = " ".join(flow["pages"]["after_vote"]["messages"])
    assert "blog.vote." in messages
    assert f"blog.comment.{flow['voted']}" in messages
    assert f"blog.article.{flow['article_pk']}" in messages


def test_page_settles_after_the_sweep(flow: dict[str, Any]) -> None:
    roles = _roles(flow["pages"]["settled"]["events"], flow["article_pk"])
    assert roles == {"detail": "hit", "comments": "hit"}


def test_new_comment_renders_only_itself(flow: dict[str, Any]) -> None:
    page = flow["pages"]["after_comment"]
    roles = _roles(page["events"], flow["article_pk"])
    new = flow["new_comment"]
    assert roles.pop("comments") == "miss"
    assert roles.pop(f"comment:{new}") == "miss"
    roles.pop("detail")
    assert roles == {f"comment:{pk}": "hit" for pk in flow["comment_pks"]}
    assert "A brand-new comment." in page["html"]


def test_list_depends_on_the_article_model(flow: dict[str, Any]) -> None:
    pages = flow["pages"]
    assert _roles(pages["list_first"]["events"], flow["article_pk"]) == {"list": "miss"}
    assert _roles(pages["list_after_edit"]["events"], flow["article_pk"]) == {"list": "miss"}
    assert "Edited title" in pages["list_after_edit"]["html"]
    after_edit = _roles(pages["after_edit"]["events"], flow["article_pk"])
    assert after_edit["detail"] != "hit"
    assert "Edited body." in pages["after_edit"]["html"]


if __name__ == "__main__" and sys.argv[1:] == ["--flow"]:
    result = run_flow()
    print(RESULT_MARKER + json.dumps(result))
