"""Cloudflare backend: headers, and the exact API requests a real Cloudflare would receive."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cachesweeper.edges import cdn
from cachesweeper.edges.base import CachePolicy, PurgeBatch, TooManyNames, coarse, purge_names
from cachesweeper.edges.cloudflare import Cloudflare
from cachesweeper.edges.queue import PurgeQueue
from tests.edges.fake_api import CLOUDFLARE_TOKEN, CLOUDFLARE_ZONE, FakeAPI, serve

PURGE = f"/zones/{CLOUDFLARE_ZONE}/purge_cache"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with serve("cloudflare") as api:
        yield api


def cloudflare(fake: FakeAPI, **options: object) -> Cloudflare:
    settings = {"zone_id": CLOUDFLARE_ZONE, "api_token": CLOUDFLARE_TOKEN, "endpoint": fake.url}
    return Cloudflare(**{**settings, **options})


def assert_api_call(fake: FakeAPI) -> None:
    for request in fake.requests:
        assert (request.method, request.path) == ("POST", PURGE)
        assert request.header("Authorization") == f"Bearer {CLOUDFLARE_TOKEN}"
        assert request.header("Content-Type") == "application/json"


# Options


def test_default_endpoint() -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    assert edge.endpoint == "https://api.cloudflare.com/client/v4"


@pytest.mark.parametrize("missing", ["zone_id", "api_token"])
def test_missing_required_option(missing: str) -> None:
    options = {"zone_id": "zone", "api_token": "tok"}
    del options[missing]
    with pytest.raises(ImproperlyConfigured, match=missing):
        Cloudflare(**options)


@pytest.mark.parametrize("token", ["", "two words", "tok\r\nX-Injected: 1", None])
def test_unusable_token(token: object) -> None:
    with pytest.raises(ImproperlyConfigured, match="api_token"):
        Cloudflare(zone_id="zone", api_token=token)


def test_unknown_option() -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS soft"):
        Cloudflare(zone_id="zone", api_token="tok", soft=True)


def test_endpoint_must_be_https_unless_local() -> None:
    with pytest.raises(ImproperlyConfigured, match="https"):
        Cloudflare(zone_id="zone", api_token="tok", endpoint="http://api.cloudflare.com/client/v4")


# Response headers


def test_cache_tag_lists_names_comma_separated() -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    headers = edge.response_headers(["blog.article.1", "frontpage"], None)
    tags = headers["Cache-Tag"].split(",")
    assert {"blog.article.1", "frontpage"} <= set(tags)
    assert all(tag and tag.strip() == tag for tag in tags)
    assert "Cloudflare-CDN-Cache-Control" not in headers


def test_public_policy_sets_cdn_cache_control_only() -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    headers = edge.response_headers(["frontpage"], CachePolicy(600))
    assert headers["Cloudflare-CDN-Cache-Control"] == "max-age=600"
    assert "Cache-Control" not in headers


@pytest.mark.parametrize(
    "policy", [CachePolicy(600, "private"), CachePolicy(600, "no-cache"), CachePolicy(0)]
)
def test_unshared_policy_is_no_store_without_tags(policy: CachePolicy) -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    headers = edge.response_headers(["blog.article.1"], policy)
    assert headers == {"Cloudflare-CDN-Cache-Control": "no-store"}


def test_many_names_are_coarsened_under_16_kb() -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    names = [f"blog.article.{pk:012d}" for pk in range(2000)] + ["frontpage"]
    value = edge.response_headers(names, CachePolicy(60))["Cache-Tag"]
    assert len(value.encode()) <= 16000
    tags = value.split(",")
    assert coarse("blog.article.1") in tags and "frontpage" in tags
    assert not any(tag.startswith("blog.article.0") for tag in tags)


def test_more_than_1000_tags_are_coarsened_even_when_short() -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    names = [f"a.b.{pk}" for pk in range(1200)]
    assert len(",".join(names).encode()) < 16000
    tags = edge.response_headers(names, None)["Cache-Tag"].split(",")
    assert len(tags) <= 1000
    assert coarse("a.b.1") in tags


def test_a_tag_over_1024_bytes_is_coarsened_or_refused() -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    long_instance = "blog.article." + "9" * 1100
    tags = edge.response_headers([long_instance, "frontpage"], None)["Cache-Tag"].split(",")
    assert long_instance not in tags and coarse(long_instance) in tags and "frontpage" in tags
    with pytest.raises(TooManyNames):
        edge.response_headers(["t" * 1025], None)


@pytest.mark.parametrize("name", ["a,b", "a b", "x\r\nSet-Cookie: a=b", "\n", ""])
def test_header_injection_is_refused(name: str) -> None:
    edge = Cloudflare(zone_id="zone", api_token="tok")
    with pytest.raises(ValueError, match="header-safe"):
        edge.response_headers([name], CachePolicy(60))
    with pytest.raises(ValueError, match="header-safe"):
        edge.purge(PurgeBatch(names=[name]))  # refused before any request is made


# Purges: the requests Cloudflare receives


def test_purge_by_tags(fake: FakeAPI) -> None:
    cloudflare(fake).purge(PurgeBatch(names=["blog.article.1", "frontpage"]))
    assert_api_call(fake)
    assert fake.bodies() == [{"tags": purge_names(["blog.article.1", "frontpage"])}]
    assert coarse("blog.article.1") in fake.bodies()[0]["tags"]


def test_250_tags_go_in_batches_of_at_most_100(fake: FakeAPI) -> None:
    names = [f"tag-{n}" for n in range(250)]
    cloudflare(fake).purge(PurgeBatch(names=names))
    assert_api_call(fake)
    assert [len(body["tags"]) for body in fake.bodies()] == [100, 100, 50]
    assert [tag for body in fake.bodies() for tag in body["tags"]] == names


def test_instance_batches_include_coarse_tags(fake: FakeAPI) -> None:
    names = [f"blog.article.{pk}" for pk in range(250)]
    cloudflare(fake).purge(PurgeBatch(names=names))
    assert [len(body["tags"]) for body in fake.bodies()] == [100, 100, 51]
    assert [tag for body in fake.bodies() for tag in body["tags"]] == purge_names(names)


def test_older_30_tag_limit_is_handled(fake: FakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    fake.limit = 30
    names = [f"tag-{n}" for n in range(130)]
    with caplog.at_level(logging.INFO, logger="cachesweeper"):
        cloudflare(fake).purge(PurgeBatch(names=names))
    sizes = [len(body["tags"]) for body in fake.bodies()]
    assert sizes == [100, 30, 30, 30, 10, 30]  # refused 100, resent; then the last 30 fit
    delivered = [tag for body in fake.bodies() if len(body["tags"]) <= 30 for tag in body["tags"]]
    assert delivered == names
    assert "resending 30 at a time" in caplog.text


def test_small_refused_batch_is_not_resent(fake: FakeAPI) -> None:
    fake.limit = 1
    with pytest.raises(cdn.PurgeFailed, match="HTTP 400"):
        cloudflare(fake).purge(PurgeBatch(names=["a", "b"]))
    assert len(fake.requests) == 1


def test_tags_too_long_for_the_api_are_not_sent(fake: FakeAPI) -> None:
    long_instance = "blog.article." + "9" * 1100
    cloudflare(fake).purge(PurgeBatch(names=[long_instance, "t" * 1025, "frontpage"]))
    assert fake.bodies() == [{"tags": [coarse(long_instance), "frontpage"]}]


def test_url_purges_go_in_batches_of_at_most_30(fake: FakeAPI) -> None:
    paths = [f"/p/{n}/" for n in range(70)]
    cloudflare(fake).purge(PurgeBatch(urls=paths, host="www.example.com"))
    assert_api_call(fake)
    assert [len(body["files"]) for body in fake.bodies()] == [30, 30, 10]
    files = [url for body in fake.bodies() for url in body["files"]]
    assert files == [f"https://www.example.com{path}" for path in paths]


def test_url_forms(fake: FakeAPI) -> None:
    urls = ["/a b?x=1#frag", "http://other.example.com/b", "relative", "/go?to=https://x.io/"]
    cloudflare(fake).purge(PurgeBatch(urls=urls, host="example.com"))
    assert fake.bodies() == [
        {
            "files": [
                "https://example.com/a%20b?x=1",
                "http://other.example.com/b",
                "https://example.com/relative",
                "https://example.com/go?to=https://x.io/",
            ]
        }
    ]


@override_settings(ALLOWED_HOSTS=["*", ".example.com"])
def test_url_purges_without_a_host_are_skipped(
    fake: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """No request host and no plain ALLOWED_HOSTS entry: nothing to address the purge to."""
    with caplog.at_level(logging.WARNING, logger="cachesweeper"):
        cloudflare(fake).purge(PurgeBatch(urls=["/a/"]))
    assert fake.requests == []
    assert "no host" in caplog.text


@override_settings(ALLOWED_HOSTS=["*", "www.example.com", "example.com"])
def test_url_purges_outside_a_request_go_to_the_first_plain_allowed_host(fake: FakeAPI) -> None:
    """A sweep from a command or a worker has no request host; its URLs still get purged."""
    cloudflare(fake).purge(PurgeBatch(urls=["/a/", "http://other.example.com/b"]))
    assert fake.bodies() == [
        {"files": ["https://www.example.com/a/", "http://other.example.com/b"]}
    ]


def test_bad_host_is_not_used(fake: FakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cachesweeper"):
        cloudflare(fake).purge(PurgeBatch(urls=["/a/"], host="evil.com/x?"))
    assert fake.requests == []
    assert "bad host" in caplog.text


def test_purge_everything(fake: FakeAPI) -> None:
    cloudflare(fake).purge(PurgeBatch(names=["x"], urls=["/"], host="a.com", everything=True))
    assert_api_call(fake)
    assert fake.bodies() == [{"purge_everything": True}]


# Failures raise, so the worker retries


def test_success_false_raises_with_cloudflares_errors(fake: FakeAPI) -> None:
    fake.mode = "unsuccessful"
    with pytest.raises(cdn.PurgeFailed, match=r"success is False.*1100: Purge failed"):
        cloudflare(fake).purge(PurgeBatch(names=["frontpage"]))


def test_server_error_raises(fake: FakeAPI) -> None:
    fake.mode = "error"
    with pytest.raises(cdn.PurgeFailed, match="HTTP 500: Internal Server Error"):
        cloudflare(fake).purge(PurgeBatch(everything=True))


def test_answer_that_is_not_json_raises(fake: FakeAPI) -> None:
    fake.mode = "not_json"
    with pytest.raises(cdn.PurgeFailed, match="not a JSON object"):
        cloudflare(fake).purge(PurgeBatch(names=["frontpage"]))


def test_wrong_token_raises_without_showing_it(fake: FakeAPI) -> None:
    with pytest.raises(cdn.PurgeFailed, match=r"HTTP 403.*Authentication error") as error:
        cloudflare(fake, api_token="secret-wrong").purge(PurgeBatch(names=["frontpage"]))
    assert "secret-wrong" not in str(error.value)


def test_wrong_zone_raises(fake: FakeAPI) -> None:
    with pytest.raises(cdn.PurgeFailed, match="HTTP 404"):
        cloudflare(fake, zone_id="other").purge(PurgeBatch(names=["frontpage"]))


def test_redirect_is_not_followed(fake: FakeAPI) -> None:
    fake.mode = "redirect"
    with pytest.raises(cdn.PurgeFailed, match="HTTP 302"):
        cloudflare(fake).purge(PurgeBatch(names=["frontpage"]))
    assert len(fake.requests) == 1


def test_unreachable_api_raises(fake: FakeAPI) -> None:
    with serve("cloudflare") as gone:
        url = gone.url
    with pytest.raises(cdn.PurgeFailed, match="Cloudflare POST"):
        cloudflare(fake, endpoint=url).purge(PurgeBatch(names=["frontpage"]))


# With the real worker


def test_worker_delivers_in_api_sized_batches(fake: FakeAPI) -> None:
    queue = PurgeQueue()
    names = [f"blog.article.{pk}" for pk in range(150)]
    queue.put([cloudflare(fake)], names=names, urls=["/a/"], host="example.com")
    assert queue.flush(timeout=5)
    assert all(len(body.get("tags", body.get("files", []))) <= 100 for body in fake.bodies())
    tags = {tag for body in fake.bodies() for tag in body.get("tags", [])}
    assert tags == set(purge_names(names))
    assert {"files": ["https://example.com/a/"]} in fake.bodies()
