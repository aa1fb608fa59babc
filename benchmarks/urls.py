"""URLconf of the benchmark site."""

from __future__ import annotations

from django.urls import URLPattern, path

from benchmarks import views

urlpatterns: list[URLPattern] = [
    path("django/page/", views.django_page),
    path("cs/page/", views.cachesweeper_page),
    path("site/page/", views.page),
    path("wsgi/page/", views.page),
    path("slow/grace/", views.slow_grace),
    path("slow/no-grace/", views.slow_no_grace),
    path("slow/django/", views.slow_django),
    path("holes/page/", views.hole_page),
    path("holes/none/", views.no_hole_page),
    path("holes/token/", views.no_hole_page_with_token),
    path("holes/empty/", views.empty_hole_page),
    path("holes/uncached/", views.csrf_uncached),
]
