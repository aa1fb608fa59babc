"""A small Wagtail site for ``cachesweeper.contrib.wagtail``, with its own settings.

Run by ``scripts/test`` as a pytest run of its own
(``pytest tests/wagtail_site --ds=tests.wagtail_site.settings``), so the main
suite neither needs Wagtail nor pays for its migrations.
"""
