"""The views an edge calls for pages with holes (see :mod:`cachesweeper.esi`).

Mount them at a path of your choice::

    path("_cachesweeper/", include("cachesweeper.urls")),
"""

from __future__ import annotations

from django.urls import URLPattern, path

from cachesweeper import views

app_name = "cachesweeper"

urlpatterns: list[URLPattern] = [
    path("hole/<str:reference>/", views.hole, name="hole"),
    path("csrf/", views.csrf_cookie, name="csrf"),
]
