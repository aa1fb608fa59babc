"""URLconf for the test suite."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from tests.testapp import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("plain/", views.plain),
    path("tagged/", views.tagged),
    path("news/", views.versioned_tag),
    path("article/<int:pk>/", views.article),
    path("articles/", views.article_list),
    path("fragment/<int:pk>/", views.with_fragment),
    path("by-path/", views.by_path),
    path("cookie/", views.sets_cookie),
    path("private-header/", views.private_header),
    path("no-store/", views.no_store),
    path("vary-cookie/", views.vary_cookie),
    path("vary-language/", views.vary_language),
    path("vary-star/", views.vary_star),
    path("session/", views.uses_session),
    path("csrf/", views.uses_csrf),
    path("streaming/", views.streaming),
    path("status/<int:code>/", views.status),
    path("opts-out/", views.opts_out),
    path("only-if/", views.only_if),
    path("whoami/", views.whoami),
    path("private/", views.private_page),
    path("async/", views.async_view),
    path("class/", views.ClassBased.as_view()),
    path("binary/", views.binary),
    path("slow/", views.slow),
    path("slow-raises/", views.slow_raises),
    path("wsgi/fragment/<int:pk>/", views.fragment_plain),
    path("no-cache/", views.no_cache),
    path("instance-tag/", views.instance_tag),
    path("listed-tags/", views.listed_tags),
    path("slow-expiring/", views.slow_expiring),
    path("gated/", views.gated),
    path("async-slow/", views.async_slow),
    path("site/slow/", views.site_slow),
    path("site/<str:kind>/", views.site_page),
    path("unruled/<str:kind>/", views.site_page),
    path("holes/form/", views.hole_form),
    path("holes/form-unholed/", views.hole_form_unholed),
    path("holes/login-bar/", views.hole_login_bar),
    path("holes/captured/", views.hole_captured),
    path("holes/vote/", views.hole_vote),
    path("holes/form-async/", views.hole_form_async),
    path("wsgi/holes/", views.hole_in_fragment),
]
