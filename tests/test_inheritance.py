"""Multi-table inheritance and proxies: a save sweeps its row at every concrete level.

``Restaurant(Place)`` and ``Bistro(Restaurant)`` are multi-table children of a
``Place`` that is not registered itself; ``FeaturedRestaurant`` is a proxy of
``Restaurant``; ``SpecialPage(Page)`` is a child of the attribute-versioned ``Page``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db.models import Model

import cachesweeper
from cachesweeper import registry, tokens
from cachesweeper.dependencies import name_of
from tests.helpers import Counter, reloaded, render, swept
from tests.testapp.models import (
    Bistro,
    FeaturedRestaurant,
    Page,
    Place,
    Restaurant,
    SpecialPage,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

ON_OBJ = "{% cachesweeper obj 500 %}{{ obj.name }}{{ counter.next }}{% endcachesweeper %}"
ON_LIST = (
    "{% cachesweeper places 500 %}{% for p in places %}{{ p.name }},{% endfor %}"
    "{{ counter.next }}{% endcachesweeper %}"
)


@contextmanager
def registered(model: type[Model], **options: Any) -> Iterator[None]:
    """``register(model, **options)`` for the block only (``model`` was not registered)."""
    assert model not in registry._registry
    cachesweeper.register(model, **options)
    try:
        yield
    finally:
        registry.remove(model)
        tokens.set_strategy(model, None)


def test_a_childs_save_sweeps_its_parents_names() -> None:
    restaurant = Restaurant.objects.create(name="Chez A")
    with swept() as names:
        restaurant.save()
    pk = restaurant.pk
    assert set(names) == {
        f"testapp.restaurant.{pk}",
        "testapp.restaurant",
        f"testapp.place.{pk}",
        "testapp.place",
        "testapp.restaurant.owner=",  # its foreign key's field dependency (no owner)
    }


def test_a_fragment_on_the_parent_object_is_swept_by_a_save_of_the_child() -> None:
    restaurant = Restaurant.objects.create(name="a")
    place = Place.objects.get(pk=restaurant.pk)  # the same row, as a plain Place
    counter = Counter()
    assert render(ON_OBJ, obj=place, counter=counter) == "a1"
    assert render(ON_OBJ, obj=reloaded(place), counter=counter) == "a1"  # cached

    restaurant.name = "b"
    restaurant.save()

    assert render(ON_OBJ, obj=reloaded(place), counter=counter) == "b2"


def test_a_fragment_on_a_parent_queryset_is_swept_by_any_child() -> None:
    Place.objects.create(name="plain")
    counter = Counter()
    assert render(ON_LIST, places=Place.objects.order_by("pk"), counter=counter) == "plain,1"

    Bistro.objects.create(name="bistro")  # a grandchild: Place is two levels up

    assert render(ON_LIST, places=Place.objects.order_by("pk"), counter=counter) == (
        "plain,bistro,2"
    )


def test_a_grandchild_sweeps_every_level_and_its_delete_too() -> None:
    bistro = Bistro.objects.create(name="b")
    pk = bistro.pk
    levels = ("bistro", "restaurant", "place")
    with swept() as names:
        bistro.save()
    assert set(names) == {f"testapp.{m}.{pk}" for m in levels} | {
        f"testapp.{m}" for m in levels
    } | {"testapp.restaurant.owner="}

    place = Place.objects.get(pk=pk)
    counter = Counter()
    render(ON_OBJ, obj=place, counter=counter)
    with swept() as names:
        bistro.delete()
    assert {f"testapp.{m}.{pk}" for m in levels} <= set(names)
    assert render(ON_OBJ, obj=place, counter=counter) == "b2"


def test_a_parent_need_not_be_registered_but_may_be() -> None:
    restaurant = Restaurant.objects.create(name="a")
    with registered(Place, tags=["places"]), swept() as names:
        restaurant.save()
    # Restaurant's own registration (MRO) decides; it names every level.
    assert f"testapp.place.{restaurant.pk}" in names
    assert "places" not in names


def test_explicit_sweeps_name_every_level() -> None:
    bistro = Bistro.objects.create(name="b")
    pk = bistro.pk
    with swept() as names:
        cachesweeper.invalidate_cache_for(bistro)
    assert names == [
        f"testapp.bistro.{pk}",
        f"testapp.restaurant.{pk}",
        f"testapp.place.{pk}",
        "testapp.restaurant.owner=",  # the lists it is in: its foreign key's field dependency
    ]
    with swept() as names:
        cachesweeper.invalidate_model(Bistro)
    models = ["testapp.bistro", "testapp.restaurant", "testapp.place"]
    assert names == [*models, *(f"{model}.*" for model in models)]  # every row too
    with swept() as names:
        cachesweeper.invalidate_queryset(Bistro.objects.filter(pk=pk))
    assert set(names) == {f"testapp.{m}.{pk}" for m in ("bistro", "restaurant", "place")} | {
        "testapp.bistro",
        "testapp.restaurant",
        "testapp.place",
        "testapp.restaurant.owner=",
    }


def test_invalidate_queryset_of_a_child_reaches_a_fragment_on_the_parent() -> None:
    restaurant = Restaurant.objects.create(name="a")
    place = Place.objects.get(pk=restaurant.pk)
    counter = Counter()
    render(ON_OBJ, obj=place, counter=counter)

    Restaurant.objects.filter(pk=restaurant.pk).update(name="b")  # no signal
    cachesweeper.invalidate_queryset(Restaurant.objects.filter(pk=restaurant.pk))

    assert render(ON_OBJ, obj=reloaded(place), counter=counter) == "b2"


def test_a_proxy_is_named_as_its_concrete_model() -> None:
    featured = FeaturedRestaurant.objects.create(name="a")
    assert name_of(featured) == f"testapp.restaurant.{featured.pk}"
    assert name_of(FeaturedRestaurant) == "testapp.restaurant"


def test_saves_through_a_proxy_or_its_concrete_model_sweep_fragments_on_either() -> None:
    restaurant = Restaurant.objects.create(name="a")
    featured = FeaturedRestaurant.objects.get(pk=restaurant.pk)
    counter = Counter()
    assert render(ON_OBJ, obj=featured, counter=counter) == "a1"
    # One row, one name: the fragment on the concrete instance is the same entry.
    assert render(ON_OBJ, obj=restaurant, counter=counter) == "a1"
    proxies = FeaturedRestaurant.objects.order_by("pk")
    list_counter = Counter()
    assert render(ON_LIST, places=proxies, counter=list_counter) == "a,1"

    featured.name = "b"
    featured.save()  # through the proxy (Restaurant's registration applies)
    assert render(ON_OBJ, obj=reloaded(restaurant), counter=counter) == "b2"
    assert render(ON_LIST, places=proxies.all(), counter=list_counter) == "b,2"

    restaurant = reloaded(restaurant)
    restaurant.name = "c"
    restaurant.save()  # through the concrete model
    assert render(ON_OBJ, obj=reloaded(featured), counter=counter) == "c3"
    with swept() as names:
        cachesweeper.invalidate_cache_for(featured)
    assert names == [
        f"testapp.restaurant.{featured.pk}",
        f"testapp.place.{featured.pk}",
        "testapp.restaurant.owner=",
    ]


def test_an_attribute_versioned_parent_fragment_sees_the_childs_save() -> None:
    """``updated_at`` is a field of Page's table: a SpecialPage save moves it."""
    special = SpecialPage.objects.create(title="a")
    page = Page.objects.get(pk=special.pk)
    source = "{% cachesweeper obj 500 %}{{ obj.title }}{{ counter.next }}{% endcachesweeper %}"
    counter = Counter()
    assert render(source, obj=page, counter=counter) == "a1"
    assert render(source, obj=Page.objects.get(pk=special.pk), counter=counter) == "a1"

    special.title = "b"
    special.save()

    assert render(source, obj=Page.objects.get(pk=special.pk), counter=counter) == "b2"
    assert tokens.attribute_for(SpecialPage) == "updated_at"  # Page's using= applies


def test_an_attribute_versioned_child_follows_its_parents_strategy() -> None:
    """So a save made through the parent class moves what the child's fragments compare."""
    special = SpecialPage.objects.create(title="a")
    source = "{% cachesweeper obj 500 %}{{ obj.title }}{{ counter.next }}{% endcachesweeper %}"
    counter = Counter()
    assert render(source, obj=special, counter=counter) == "a1"

    page = Page.objects.get(pk=special.pk)
    page.title = "b"
    page.save()  # through Page: updated_at (on Page's table) moves

    assert render(source, obj=SpecialPage.objects.get(pk=special.pk), counter=counter) == "b2"
