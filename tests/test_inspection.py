"""``cache_page`` marks its wrapper with its policy; ``view_policies`` reads the marks."""

from __future__ import annotations

import functools

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.http import require_GET

from cachesweeper import cache_page
from cachesweeper.contrib import custom_cache_page
from cachesweeper.inspection import view_policies
from cachesweeper.pages import POLICY_ATTRIBUTE, PagePolicy


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("page")


async def async_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("page")


def test_the_wrapper_carries_its_policy() -> None:
    view = cache_page(60, tags=["x"], grace=5)(page)
    policy = getattr(view, POLICY_ATTRIBUTE)
    assert POLICY_ATTRIBUTE == "cachesweeper_policy"
    assert isinstance(policy, PagePolicy)
    assert (policy.timeout, policy.tags, policy.grace) == (60, ["x"], 5)
    assert view_policies(view) == [policy]


def test_an_async_wrapper_carries_its_policy() -> None:
    view = cache_page(30)(async_page)
    assert [policy.timeout for policy in view_policies(view)] == [30]


def test_an_undecorated_view_has_none() -> None:
    assert view_policies(page) == []
    assert view_policies(require_GET(page)) == []


def test_stacked_policies_outermost_first() -> None:
    view = cache_page(10)(cache_page(20)(page))
    assert [policy.timeout for policy in view_policies(view)] == [10, 20]


def test_found_under_decorators_that_use_functools_wraps() -> None:
    view = require_GET(cache_page(60)(page))
    assert [policy.timeout for policy in view_policies(view)] == [60]
    assert [policy.timeout for policy in view_policies(functools.partial(view))] == [60]


def test_found_on_class_based_views() -> None:
    @method_decorator(cache_page(60, tags=["cbv"]), name="dispatch")
    class OnDispatch(View):
        def get(self, request: HttpRequest) -> HttpResponse:
            return HttpResponse("class")

    class OnGet(View):
        @method_decorator(cache_page(30))
        def get(self, request: HttpRequest) -> HttpResponse:
            return HttpResponse("class")

    assert [policy.tags for policy in view_policies(OnDispatch.as_view())] == [["cbv"]]
    assert [policy.timeout for policy in view_policies(OnGet.as_view())] == [30]
    decorated = cache_page(90)(OnGet.as_view())
    assert [policy.timeout for policy in view_policies(decorated)] == [90, 30]


def test_the_compatibility_decorator_is_found() -> None:
    view = custom_cache_page.cache_page(60, only_if=lambda request: True)(page)
    assert [policy.timeout for policy in view_policies(view)] == [60]
    view = custom_cache_page.cache_page(60)(async_page)
    assert [policy.timeout for policy in view_policies(view)] == [60]
