"""Seed the demo: 2 authors, 5 articles, a few comments each, some votes.

Migrations use historical models, which are not the classes registered with
cachesweeper, so seeding sweeps nothing (and needs no cache).
"""

from datetime import datetime, timedelta, timezone

from django.db import migrations

AUTHORS = ["Mira Okafor", "Jonas Berg"]

# (author index, slug, title, body, [(commenter, comment, [vote values])])
ARTICLES = [
    (
        0,
        "why-key-based-expiry",
        "Why key-based expiry beats deleting keys",
        "Deleting cache keys means knowing every key a change affects. Key-based expiry "
        "turns that around: cached content remembers the versions of what it was built "
        "from, and a change only bumps a version.\n\n"
        "Nothing is deleted; stale entries are simply never read again.",
        [
            ("Sam", "This finally made Russian-doll caching click for me.", [1, 1, 1]),
            ("Priya", "What happens when the cache evicts a version counter?", [1, 1]),
            ("Lee", "It is created again from a random seed, so old entries cannot match.", [1]),
        ],
    ),
    (
        1,
        "russian-doll-caching",
        "Russian-doll caching in Django templates",
        "Nest fragments: a page, its comment list, each comment. When one comment changes, "
        "only that comment and the fragments around it re-render; its siblings come "
        "straight from the cache.",
        [
            (
                "Ana",
                "The nested tags read well. Does the outer block know about the inner ones?",
                [1],
            ),
            ("Tom", "Yes - dependencies propagate from inner fragments to outer ones.", [1, 1]),
        ],
    ),
    (
        0,
        "touch-without-writes",
        "Touch without writing to the database",
        "Rails' touch: true updates a parent row on every child save. With counter tokens "
        "the parent's version is bumped in the cache instead: no row locks, no deadlocks.",
        [
            ("Ravi", "No extra UPDATE per vote is a big deal on busy threads.", [1, 1, -1]),
            ("Eve", "And it still works in attribute mode, just with one UPDATE.", []),
            ("Kai", "Nice write-up.", [1]),
        ],
    ),
    (
        1,
        "sweeping-after-commit",
        "Sweep after commit, not before",
        "If you invalidate inside a transaction, a concurrent reader can cache the old row "
        "under the new version. Defer sweeps to transaction.on_commit.",
        [
            ("Lin", "Bitten by exactly this last year.", [1, 1]),
            ("Max", "Does it de-duplicate sweeps inside one transaction?", [1]),
        ],
    ),
    (
        0,
        "grace-and-dog-piles",
        "Grace periods and dog-piles",
        "When a hot fragment expires, a hundred requests may try to rebuild it at once. With "
        "a grace period one request rebuilds while the others get the previous copy.",
        [
            ("Ola", "Serving stale for a few seconds is fine for a blog.", [1]),
            ("Ben", "How long is the lock held?", []),
            ("Mira Okafor", "Briefly, and it is released even if the render fails.", [1, 1]),
        ],
    ),
]


def seed(apps, schema_editor):
    Author = apps.get_model("blog", "Author")
    Article = apps.get_model("blog", "Article")
    Comment = apps.get_model("blog", "Comment")
    Vote = apps.get_model("blog", "Vote")

    authors = [Author.objects.create(name=name) for name in AUTHORS]
    start = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    for days, (author, slug, title, body, comments) in enumerate(ARTICLES):
        article = Article.objects.create(
            author=authors[author],
            slug=slug,
            title=title,
            body=body,
            published=start + timedelta(days=7 * days),
        )
        for name, text, votes in comments:
            comment = Comment.objects.create(article=article, author_name=name, body=text)
            Vote.objects.bulk_create(Vote(comment=comment, value=value) for value in votes)


def unseed(apps, schema_editor):
    apps.get_model("blog", "Author").objects.filter(name__in=AUTHORS).delete()


class Migration(migrations.Migration):
    dependencies = [("blog", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
