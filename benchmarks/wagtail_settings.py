"""The Wagtail test site's settings, for ``python -m benchmarks.wagtail``.

Only the template directory is added: the benchmark's variants of the site's
templates (no cache tags; Wagtail's ``{% wagtailcache %}``) live in
``benchmarks/templates``, so the test site stays as the tests use it.
"""

from __future__ import annotations

from tests.wagtail_site.settings import *  # noqa: F403
from tests.wagtail_site.settings import BASE_DIR, TEMPLATES

TEMPLATES[0]["DIRS"] = [*TEMPLATES[0]["DIRS"], BASE_DIR / "benchmarks" / "templates"]
