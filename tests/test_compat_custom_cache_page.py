"""django-custom-cache-page code runs on cachesweeper with only its import line changed.

The first part takes every example of that library's README as its users
wrote it, with ``from custom_cache_page import ...`` turned into
``from cachesweeper.contrib.custom_cache_page import ...``, and checks what
a visitor sees: whether the view ran again, and fresh content after a tag
is invalidated. The second part asserts, in our words, the behaviours the
library's own test suite asserts. Every test runs on LocMem, memcached,
django-redis and Django's RedisCache.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.test import Client, RequestFactory
from django.urls import path

from cachesweeper.contrib.custom_cache_page import (
    Versioned,
    cache_page,
    generate_cache_key,
    generate_query_params_cache_key,
    hash_key,
    invalidate_tag,
    invalidate_tags,
    surrogate_from_model,
    surrogate_from_path,
    surrogate_from_query_params,
    surrogate_from_user,
    versioned,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("cache_backend"),
    pytest.mark.urls(__name__),
]

RUNS: Counter[str] = Counter()
#: What the views show; tests change it behind the cache's back.
SHOP: dict[str, str] = {}


def ran(view: str) -> int:
    RUNS[view] += 1
    return RUNS[view]


@pytest.fixture(autouse=True)
def _fresh_shop() -> Iterator[None]:
    RUNS.clear()
    SHOP.clear()
    SHOP.update(products="shoes, hats", greeting="Hello, World!")
    yield
    RUNS.clear()


def text(response: Any) -> str:
    return response.content.decode()  # type: ignore[no-any-return]


# -- the README's views, as written there -------------------------------------------------


# "Why not Django's built-in cache_page?"
@cache_page(timeout=3600, key_func=lambda r: r.path, tags=["products"])
def product_list(request: HttpRequest) -> HttpResponse:
    ran("product_list")
    return HttpResponse(f"products: {SHOP['products']}")


# "Quick Start" and "Basic Caching"
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
)
def my_view(request: HttpRequest) -> HttpResponse:
    ran("my_view")
    return HttpResponse(SHOP["greeting"])


# "Cache Tags (Surrogate Keys)"
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
    tags=[
        "products",  # Static tag
        lambda r: f"category-{r.GET.get('cat')}",  # Dynamic tag
    ],
)
def category_list(request: HttpRequest) -> HttpResponse:
    ran(f"category_list {request.GET.get('cat')}")
    return HttpResponse(f"{request.GET.get('cat')}: {SHOP['products']}")


# "O(1) Versioned Invalidation"
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
    tags=[
        versioned("products"),  # O(1) invalidation via version increment
        "category",  # Regular tag (deletes entries)
    ],
)
def versioned_list(request: HttpRequest) -> HttpResponse:
    ran("versioned_list")
    return HttpResponse(f"products: {SHOP['products']}")


# "Dynamic Tags"
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
    tags=[
        lambda r: f"user-{r.user.pk}",  # Per-user tag
        lambda r: f"store-{r.headers.get('X-Store-ID')}",
        lambda r: [f"a-{r.GET.get('a')}", f"b-{r.GET.get('b')}"],  # Multiple tags
    ],
)
def dashboard(request: HttpRequest) -> HttpResponse:
    ran("dashboard")
    return HttpResponse(f"dashboard of {request.user} {SHOP['products']}")


# "Conditional Caching"
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
    only_if=lambda r: r.user.is_anonymous,  # Only cache for anonymous users
)
def public_page(request: HttpRequest) -> HttpResponse:
    ran("public_page")
    return HttpResponse(f"public {SHOP['greeting']}")


# "Bypass Cache"
@cache_page(timeout=3600, key_func=lambda r: r.path)
def previewable(request: HttpRequest) -> HttpResponse:
    if request.GET.get("preview"):
        request.do_not_cache = True  # type: ignore[attr-defined]
    ran("previewable")
    return HttpResponse(SHOP["greeting"])


# "Key Generation Utilities"
@cache_page(
    timeout=3600,
    key_func=generate_cache_key,
)
def keyed_view(request: HttpRequest, slug: str) -> HttpResponse:
    ran("keyed_view")
    return HttpResponse(f"{request.GET.urlencode()} {SHOP['greeting']}")


# "Surrogate Key Generators"
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
    tags=[
        surrogate_from_path,  # "path-api-products"
        lambda r: surrogate_from_model("Product", r.GET.get("id")),
        surrogate_from_user,  # "user-123" or None
    ],
)
def product_detail(request: HttpRequest) -> HttpResponse:
    ran(f"product_detail {request.GET.get('id')}")
    return HttpResponse(f"product {request.GET.get('id')}: {SHOP['products']}")


# "Upgrading from v0.x", the v1.0 side
@cache_page(
    timeout=3600,
    key_func=lambda r: r.path,
    tags=[versioned("my-group")],
)
def grouped(request: HttpRequest) -> HttpResponse:
    ran("grouped")
    return HttpResponse(SHOP["greeting"])


# The v0.x README's example: timeout and key function given by position.
@cache_page(60 * 60, generate_query_params_cache_key)
def positional(request: HttpRequest) -> HttpResponse:
    ran("positional")
    return HttpResponse("okay")


@cache_page(timeout=3600, key_func=lambda r: r.path, only_if=lambda r: r.user.is_anonymous)
async def async_public_page(request: HttpRequest) -> HttpResponse:
    ran("async_public_page")
    return HttpResponse(f"public {SHOP['greeting']}")


urlpatterns = [
    path("products/", product_list),
    path("hello/", my_view),
    path("categories/", category_list),
    path("versioned/", versioned_list),
    path("dashboard/", dashboard),
    path("public/", public_page),
    path("preview/", previewable),
    path("keyed/<str:slug>/", keyed_view),
    path("api/products/", product_detail),
    path("grouped/", grouped),
    path("positional/", positional),
    path("async-public/", async_public_page),
]


# -- the README's examples ------------------------------------------------------------------


def test_readme_why_tags_then_invalidate_products(client: Client) -> None:
    assert text(client.get("/products/")) == "products: shoes, hats"
    SHOP["products"] = "shoes, hats, scarves"
    assert text(client.get("/products/")) == "products: shoes, hats"  # cached
    assert RUNS["product_list"] == 1

    invalidate_tag("products")

    assert text(client.get("/products/")) == "products: shoes, hats, scarves"
    assert text(client.get("/products/")) == "products: shoes, hats, scarves"
    assert RUNS["product_list"] == 2


def test_readme_quick_start_caches_by_path(client: Client) -> None:
    assert text(client.get("/hello/")) == "Hello, World!"
    SHOP["greeting"] = "Bye"
    assert text(client.get("/hello/")) == "Hello, World!"
    assert text(client.get("/hello/?utm=1")) == "Hello, World!"  # key_func: the path only
    assert RUNS["my_view"] == 1


def test_readme_static_and_dynamic_tags(client: Client) -> None:
    assert text(client.get("/categories/?cat=shoes")) == "shoes: shoes, hats"
    assert text(client.get("/categories/?cat=hats")) == "hats: shoes, hats"
    SHOP["products"] = "new stock"
    assert text(client.get("/categories/?cat=shoes")) == "shoes: shoes, hats"

    invalidate_tag("category-shoes")  # one category's pages

    assert text(client.get("/categories/?cat=shoes")) == "shoes: new stock"
    assert text(client.get("/categories/?cat=hats")) == "hats: shoes, hats"

    invalidate_tag("products")  # all of them

    assert text(client.get("/categories/?cat=hats")) == "hats: new stock"
    assert RUNS == {"category_list shoes": 2, "category_list hats": 2}


@pytest.mark.parametrize("tag", ["products", "category"])
def test_readme_versioned_and_regular_tags_both_invalidate(client: Client, tag: str) -> None:
    client.get("/versioned/")
    SHOP["products"] = "sold out"
    assert text(client.get("/versioned/")) == "products: shoes, hats"

    invalidate_tag(tag)

    assert text(client.get("/versioned/")) == "products: sold out"
    assert RUNS["versioned_list"] == 2


def test_readme_dynamic_tags_for_an_anonymous_visitor(client: Client) -> None:
    url = "/dashboard/?a=1&b=2"
    assert text(client.get(url, HTTP_X_STORE_ID="5")) == "dashboard of AnonymousUser shoes, hats"
    client.get(url, HTTP_X_STORE_ID="5")
    assert RUNS["dashboard"] == 1
    SHOP["products"] = "restocked"

    for tag in ("store-5", "a-1", "b-2", "user-None"):
        invalidate_tag(tag)
        assert text(client.get(url, HTTP_X_STORE_ID="5")).endswith("restocked")
    assert RUNS["dashboard"] == 5

    invalidate_tag("store-6")  # another store's pages only
    client.get(url, HTTP_X_STORE_ID="5")
    assert RUNS["dashboard"] == 5


def test_readme_dynamic_tags_never_share_a_logged_in_dashboard(client: Client) -> None:
    """The original keyed this page by path alone; cachesweeper never shares it."""
    ann = User.objects.create_user("ann", password="pw")
    bob = User.objects.create_user("bob", password="pw")
    client.force_login(ann)
    assert text(client.get("/dashboard/")).startswith("dashboard of ann")
    other = Client()
    other.force_login(bob)
    assert text(other.get("/dashboard/")).startswith("dashboard of bob")
    assert text(client.get("/dashboard/")).startswith("dashboard of ann")


def test_readme_conditional_caching(client: Client) -> None:
    client.get("/public/")
    client.get("/public/")
    assert RUNS["public_page"] == 1

    client.force_login(User.objects.create_user("ann", password="pw"))
    client.get("/public/")
    client.get("/public/")
    assert RUNS["public_page"] == 3


def test_readme_bypass_with_do_not_cache(client: Client) -> None:
    client.get("/preview/?preview=1")
    client.get("/preview/?preview=1")
    assert RUNS["previewable"] == 2  # never stored

    client.get("/preview/")
    client.get("/preview/")
    assert RUNS["previewable"] == 3


def test_readme_generate_cache_key(client: Client) -> None:
    assert text(client.get("/keyed/a/?x=1&y=2")) == "x=1&y=2 Hello, World!"
    assert text(client.get("/keyed/a/?y=2&x=1")) == "x=1&y=2 Hello, World!"  # same page
    assert RUNS["keyed_view"] == 1
    client.get("/keyed/a/?x=2&y=2")
    client.get("/keyed/b/?x=1&y=2")
    assert RUNS["keyed_view"] == 3


def test_readme_surrogate_key_generators(client: Client) -> None:
    assert text(client.get("/api/products/?id=7")) == "product 7: shoes, hats"
    assert text(client.get("/api/products/?id=8")) == "product 8: shoes, hats"
    SHOP["products"] = "boots"

    invalidate_tag(surrogate_from_model("Product", 7))  # "model-product-7"

    assert text(client.get("/api/products/?id=7")) == "product 7: boots"
    assert text(client.get("/api/products/?id=8")) == "product 8: shoes, hats"

    invalidate_tag("path-api-products")

    assert text(client.get("/api/products/?id=8")) == "product 8: boots"
    assert RUNS == {"product_detail 7": 2, "product_detail 8": 2}


def test_readme_upgrading_example(client: Client) -> None:
    client.get("/grouped/")
    SHOP["greeting"] = "changed"
    assert text(client.get("/grouped/")) == "Hello, World!"

    invalidate_tag("my-group")

    assert text(client.get("/grouped/")) == "changed"


def test_readme_v0_positional_timeout_and_key_func(client: Client) -> None:
    client.get("/positional/?b=2&a=1")
    client.get("/positional/?a=1&b=2")
    assert RUNS["positional"] == 1
    response = client.get("/positional/?a=2")
    assert RUNS["positional"] == 2
    assert "max-age=3600" in response["Cache-Control"]


def test_readme_custom_backends_are_not_carried_over() -> None:
    """The README's backend classes have no counterpart: say so, where it is used."""
    with pytest.raises(ImproperlyConfigured, match=r'CACHESWEEPER\["EDGES"\]'):
        cache_page(timeout=3600, key_func=lambda r: r.path, backend="fastly")  # type: ignore[arg-type]


# -- what the library's own tests assert ------------------------------------------------------


@pytest.fixture
def rf() -> RequestFactory:
    return RequestFactory()


def counted(**options: Any) -> Any:
    """A view under ``cache_page(timeout=300, **options)``; its runs are counted in RUNS."""

    @cache_page(timeout=300, **options)
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"run {ran('view')}")

    return view


def test_versioned_keeps_its_name_and_timeout(rf: RequestFactory) -> None:
    tag = versioned("my-tag", timeout=1000)
    assert isinstance(tag, Versioned)
    assert (tag.name, tag.timeout) == ("my-tag", 1000)
    assert versioned("tag").timeout is None  # counters never expire here
    assert Versioned(name="products").resolve_name(rf.get("/")) == "products"
    dynamic = Versioned(name=lambda r: f"store:{r.path}")
    assert dynamic.resolve_name(rf.get("/test")) == "store:/test"


def test_request_factory_requests_are_cached(rf: RequestFactory) -> None:
    view = counted(key_func=lambda r: r.path)
    view(rf.get("/basic"))
    assert text(view(rf.get("/basic"))) == "run 1"


def test_do_not_cache_set_before_the_view(rf: RequestFactory) -> None:
    view = counted(key_func=lambda r: r.path)
    request = rf.get("/no-cache")
    request.do_not_cache = True  # type: ignore[attr-defined]
    view(request)
    view(request)
    assert RUNS["view"] == 2


@pytest.mark.parametrize(("allowed", "runs"), [(False, 2), (True, 1)])
def test_only_if(rf: RequestFactory, allowed: bool, runs: int) -> None:
    view = counted(key_func=lambda r: r.path, only_if=lambda r: allowed)
    first = view(rf.get("/only-if"))
    view(rf.get("/only-if"))
    assert RUNS["view"] == runs
    assert ("max-age" in first.get("Cache-Control", "")) is allowed


def test_error_pages_are_not_cached(rf: RequestFactory) -> None:
    @cache_page(timeout=300, key_func=lambda r: r.path)
    def missing(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"not found {ran('missing')}", status=404)

    missing(rf.get("/404"))
    response = missing(rf.get("/404"))
    assert RUNS["missing"] == 2
    assert "max-age" not in response.get("Cache-Control", "")


def test_a_page_that_sets_a_cookie_is_neither_stored_nor_given_max_age(
    rf: RequestFactory,
) -> None:
    @cache_page(timeout=300, key_func=lambda r: r.path)
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse(f"run {ran('view')}")
        response.set_cookie("cart", "3 items")
        return response

    view(rf.get("/cart"))
    response = view(rf.get("/cart"))
    assert RUNS["view"] == 2
    assert "max-age" not in response.get("Cache-Control", "")


def test_a_callable_prefix_keeps_pages_apart(rf: RequestFactory) -> None:
    view = counted(key_func=lambda r: "key", prefix=lambda r: f"store:{r.GET.get('store', '1')}")
    view(rf.get("/test?store=1"))
    view(rf.get("/test?store=1"))
    assert RUNS["view"] == 1
    assert text(view(rf.get("/test?store=2"))) == "run 2"
    assert text(view(rf.get("/test?store=1"))) == "run 1"


def test_a_callable_timeout_decides_from_the_response(rf: RequestFactory) -> None:
    @cache_page(
        timeout=lambda response: 600 if response.status_code == 200 else 60,
        key_func=lambda r: r.path,
    )
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"run {ran('view')}")

    response = view(rf.get("/timeout-callable"))
    assert "max-age=600" in response["Cache-Control"]
    assert response.has_header("Expires")
    hit = view(rf.get("/timeout-callable"))
    assert (text(hit), RUNS["view"]) == ("run 1", 1)
    assert "max-age=600" in hit["Cache-Control"]


def test_a_dynamic_versioned_tag_keeps_pages_apart(rf: RequestFactory) -> None:
    view = counted(key_func=lambda r: "key", tags=[versioned(lambda r: f"store:{r.GET['store']}")])
    view(rf.get("/test?store=1"))
    view(rf.get("/test?store=1"))
    view(rf.get("/test?store=2"))
    assert RUNS["view"] == 2

    invalidate_tag("store:1")

    assert text(view(rf.get("/test?store=1"))) == "run 3"
    assert text(view(rf.get("/test?store=2"))) == "run 2"


@pytest.mark.parametrize(
    ("tag", "swept"),
    [
        (lambda r: "dynamic-tag", ["dynamic-tag"]),
        (lambda r: ["tag1", "tag2"], ["tag1", "tag2"]),
        (lambda r: None, []),
        ("static", ["static"]),
        (versioned("products"), ["products"]),
    ],
    ids=["string", "list", "none", "static", "versioned"],
)
def test_each_kind_of_tag_is_cached_and_invalidated(
    rf: RequestFactory, tag: Any, swept: list[str]
) -> None:
    view = counted(key_func=lambda r: r.path, tags=[tag])
    view(rf.get("/tags"))
    assert text(view(rf.get("/tags"))) == "run 1"
    runs = 1
    for name in swept:
        invalidate_tag(name)
        runs += 1
        assert text(view(rf.get("/tags"))) == f"run {runs}"
    invalidate_tag("unrelated")
    assert text(view(rf.get("/tags"))) == f"run {runs}"


def test_tag_callables_get_the_request_only_whatever_the_view_takes(rf: RequestFactory) -> None:
    @cache_page(300, tags=[lambda r: f"shelf-{r.GET['shelf']}", versioned(lambda r: "aisle")])
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        return HttpResponse(f"product {pk} run {ran('view')}")

    view(rf.get("/product/3/?shelf=a"), pk=3)
    assert text(view(rf.get("/product/3/?shelf=a"), pk=3)) == "product 3 run 1"
    invalidate_tag("shelf-a")
    assert text(view(rf.get("/product/3/?shelf=a"), pk=3)) == "product 3 run 2"
    invalidate_tag("aisle")
    assert text(view(rf.get("/product/3/?shelf=a"), pk=3)) == "product 3 run 3"


def test_a_single_tag_given_as_a_string(rf: RequestFactory) -> None:
    view = counted(key_func=lambda r: r.path, tags="products")
    view(rf.get("/one-tag"))
    invalidate_tag("products")
    assert text(view(rf.get("/one-tag"))) == "run 2"


def test_a_template_response_is_cached_rendered(rf: RequestFactory) -> None:
    template = engines["django"].from_string("deferred {{ run }}")

    @cache_page(timeout=300, key_func=lambda r: r.path)
    def view(request: HttpRequest) -> TemplateResponse:
        return TemplateResponse(request, template, {"run": ran("view")})

    view(rf.get("/deferred"))
    response = view(rf.get("/deferred"))
    assert text(response) == "deferred 1"


def test_invalidate_tag_and_tags_count_the_tags_swept(rf: RequestFactory) -> None:
    view = counted(key_func=lambda r: r.path, tags=["tag-a", versioned("tag-b")])
    view(rf.get("/inv"))

    assert invalidate_tag("tag-a") == 1
    assert text(view(rf.get("/inv"))) == "run 2"
    assert invalidate_tags(["tag-a", "tag-b", "tag-b"]) == 2
    assert text(view(rf.get("/inv"))) == "run 3"
    assert invalidate_tags([]) == 0


def test_async_views_are_cached(rf: RequestFactory) -> None:
    from asgiref.sync import async_to_sync

    @cache_page(timeout=300, key_func=lambda r: r.path, tags=[lambda r: "async-tag"])
    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"run {ran('view')}")

    call = async_to_sync(view)
    call(rf.get("/async"))
    assert text(call(rf.get("/async"))) == "run 1"
    invalidate_tag("async-tag")
    assert text(call(rf.get("/async"))) == "run 2"


def test_only_if_may_ask_who_is_logged_in_from_an_async_view() -> None:
    """The user is loaded off the event loop first (a session read there would raise)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    client.force_login(User.objects.create_user("ann", password="pw"))
    for _ in range(2):
        response = async_to_sync(client.get)("/async-public/")
        assert text(response) == "public Hello, World!"
    assert RUNS["async_public_page"] == 2  # a logged-in visitor: only_if said no


# -- key helpers and surrogate keys -----------------------------------------------------------


def test_query_params_key_ignores_order_and_keeps_every_value(rf: RequestFactory) -> None:
    key = generate_query_params_cache_key
    assert key(rf.get("/path", {"z": "1", "a": "2"})) == key(rf.get("/other?a=2&z=1"))
    assert key(rf.get("/path?a=1&a=2")) != key(rf.get("/path?a=2&a=1"))
    assert key(rf.get("/path?page=1")) != key(rf.get("/path?page=2"))


def test_cache_key_includes_the_path(rf: RequestFactory) -> None:
    key = generate_cache_key
    assert key(rf.get("/my-path?page=1")) == key(rf.get("/my-path?page=1"))
    assert key(rf.get("/my-path?page=1")) != key(rf.get("/mypath?page=1"))
    assert key(rf.get("/my-path?page=1")) != key(rf.get("/my-path?page=2"))


def test_hash_key_is_the_md5_hex_digest() -> None:
    assert hash_key("test-key") == "53136271c432a1af377c3806c3112ddf"
    assert len(hash_key("prefix:cached_views:0:/bo")) == 32


def test_surrogate_keys(rf: RequestFactory) -> None:
    assert surrogate_from_path(rf.get("/api/products/123/")) == "path-api-products-123"
    assert surrogate_from_path(rf.get("/")) == "path-root"
    assert surrogate_from_model("Product") == "model-product"
    assert surrogate_from_model("Product", 123) == "model-product-123"
    request = rf.get("/", {"category": "shoes", "brand": "nike", "empty": ""})
    assert surrogate_from_query_params(request) == ["param-category-shoes", "param-brand-nike"]
    assert surrogate_from_query_params(request, params=["category"]) == ["param-category-shoes"]


def test_surrogate_from_user(rf: RequestFactory) -> None:
    from django.contrib.auth.models import AnonymousUser

    request = rf.get("/")
    assert surrogate_from_user(request) is None  # no user at all
    request.user = AnonymousUser()
    assert surrogate_from_user(request) is None
    request.user = User.objects.create_user("ann")
    assert surrogate_from_user(request) == f"user-{request.user.pk}"
