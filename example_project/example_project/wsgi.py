"""WSGI entry point: ``runserver`` serves this too (``WSGI_APPLICATION``), as would gunicorn.

It is Django's own ``get_wsgi_application()``, with one addition for the demo: the
handler fills in each page's footer - which fragments and pages hit, missed or were
served stale, the cache round trips made, and the edge headers the response carries -
after every middleware has run (see ``blog/showcase.py``). A real project keeps
``application = get_wsgi_application()``.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
django.setup(set_prefix=False)

from blog.showcase import ShowMechanismWSGIHandler  # noqa: E402 - needs the apps loaded

application = ShowMechanismWSGIHandler()
