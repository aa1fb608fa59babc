"""Fastly backend: headers, and the exact API requests a real Fastly would receive."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cachesweeper.edges import cdn
from cachesweeper.edges.base import CachePolicy, PurgeBatch, TooManyNames, coarse, purge_names
from cachesweeper.edges.fastly import Fastly
from cachesweeper.edges.queue import PurgeQueue
from tests.edges.fake_api import FASTLY_SERVICE, FASTLY_TOKEN, FakeAPI, serve

SERVICE = f"/service/{FASTLY_SERVICE}"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with serve("fastly") as api:
        yield api


def fastly(fake: FakeAPI, **options: object) -> Fastly:
    settings = {"service_id": FASTLY_SERVICE, "api_token": FASTLY_TOKEN, "endpoint": fake.url}
    return Fastly(**{**settings, **options})


# Options


def test_defaults() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    assert edge.soft is True
    assert edge.endpoint == "https://api.fastly.com"


@pytest.mark.parametrize("missing", ["service_id", "api_token"])
def test_missing_required_option(missing: str) -> None:
    options = {"service_id": "svc", "api_token": "tok"}
    del options[missing]
    with pytest.raises(ImproperlyConfigured, match=missing):
        Fastly(**options)


@pytest.mark.parametrize("token", ["", "   ", "two words", "tok\r\nX-Injected: 1", 42])
def test_unusable_token(token: object) -> None:
    with pytest.raises(ImproperlyConfigured, match="api_token"):
        Fastly(service_id="svc", api_token=token)


def test_token_from_a_file_keeps_working_despite_its_newline() -> None:
    assert Fastly(service_id="svc", api_token="tok\n").api_token == "tok"


def test_unknown_option() -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS zone_id"):
        Fastly(service_id="svc", api_token="tok", zone_id="z")


@pytest.mark.parametrize(
    "endpoint", ["http://api.fastly.com", "ftp://api.fastly.com", "file:///etc/passwd", "api"]
)
def test_endpoint_must_be_https_unless_local(endpoint: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="endpoint"):
        Fastly(service_id="svc", api_token="tok", endpoint=endpoint)


def test_local_http_endpoint_is_allowed() -> None:
    edge = Fastly(service_id="s", api_token="t", endpoint="http://localhost:8080/")
    assert edge.endpoint == "http://localhost:8080"


# Response headers


def test_surrogate_key_lists_names_space_separated() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    headers = edge.response_headers(["blog.article.1", "blog.article.2", "frontpage"], None)
    keys = headers["Surrogate-Key"].split(" ")
    assert {"blog.article.1", "blog.article.2", "frontpage"} <= set(keys)
    assert all(keys) and len(keys) == len(set(keys))
    assert "Surrogate-Control" not in headers


def test_no_names_no_surrogate_key() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    assert edge.response_headers([], None) == {}


def test_public_policy_sets_surrogate_control_only() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    headers = edge.response_headers(["frontpage"], CachePolicy(300))
    assert headers["Surrogate-Control"] == "max-age=300"
    assert "Cache-Control" not in headers  # the browser's header is the middleware's


@pytest.mark.parametrize(
    "policy", [CachePolicy(300, "private"), CachePolicy(300, "no-cache"), CachePolicy(0)]
)
def test_unshared_policy_is_no_store_without_keys(policy: CachePolicy) -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    names = [f"blog.article.{pk}" for pk in range(5000)] + [f"tag{n}" * 50 for n in range(500)]
    assert edge.response_headers(names, policy) == {"Surrogate-Control": "no-store"}


def test_many_names_are_coarsened_under_16_kb() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    names = [f"blog.article.{pk:012d}" for pk in range(2000)] + ["frontpage"]
    assert len(" ".join(names).encode()) > 16384
    value = edge.response_headers(names, CachePolicy(60))["Surrogate-Key"]
    assert len(value.encode()) <= 16384
    keys = value.split(" ")
    assert coarse("blog.article.1") in keys and "frontpage" in keys
    assert not any(key.startswith("blog.article.0") for key in keys)


def test_a_key_over_1024_bytes_is_coarsened_alone() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    long_instance = "blog.article." + "x" * 1100
    keys = edge.response_headers([long_instance, "blog.comment.7"], None)["Surrogate-Key"]
    assert long_instance not in keys.split(" ")
    assert coarse(long_instance) in keys.split(" ")
    assert "blog.comment.7" in keys.split(" ")
    assert all(len(key.encode()) <= 1024 for key in keys.split(" "))


def test_a_tag_over_1024_bytes_cannot_be_sent() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    with pytest.raises(TooManyNames):
        edge.response_headers(["t" * 1025], CachePolicy(60))


def test_too_many_models_even_when_coarsened() -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    names = [f"app{n:04d}.model{n:04d}.1" for n in range(1000)]
    with pytest.raises(TooManyNames):
        edge.response_headers(names, CachePolicy(60))


@pytest.mark.parametrize(
    "name",
    ["bad\r\nSet-Cookie: a=b", "two words", "a,b", "tab\there", "", "nul\x00", "é"],
)
@pytest.mark.parametrize("policy", [None, CachePolicy(60), CachePolicy(0)])
def test_header_injection_is_refused(name: str, policy: CachePolicy | None) -> None:
    edge = Fastly(service_id="svc", api_token="tok")
    with pytest.raises(ValueError, match="header-safe"):
        edge.response_headers(["frontpage", name], policy)


# Purges: the requests Fastly receives


def test_purge_by_surrogate_key(fake: FakeAPI) -> None:
    fastly(fake).purge(PurgeBatch(names=["blog.article.1", "frontpage"]))
    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == f"{SERVICE}/purge"
    assert request.header("Fastly-Key") == FASTLY_TOKEN
    assert request.header("Accept") == "application/json"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Fastly-Soft-Purge") == "1"
    assert request.body == {"surrogate_keys": purge_names(["blog.article.1", "frontpage"])}
    assert coarse("blog.article.1") in request.body["surrogate_keys"]
    assert "Surrogate-Key" not in request.headers


def test_hard_purge(fake: FakeAPI) -> None:
    fastly(fake, soft=False).purge(PurgeBatch(names=["frontpage"]))
    [request] = fake.requests
    assert request.header("Fastly-Soft-Purge") is None
    assert request.body == {"surrogate_keys": ["frontpage"]}


def test_600_names_go_in_batches_of_at_most_256(fake: FakeAPI) -> None:
    names = [f"blog.article.{pk}" for pk in range(600)]
    fastly(fake).purge(PurgeBatch(names=names))
    assert [request.path for request in fake.requests] == [f"{SERVICE}/purge"] * 3
    sent = [request.body["surrogate_keys"] for request in fake.requests]
    assert [len(keys) for keys in sent] == [256, 256, 89]  # 600 names + 1 coarse tag
    flat = [key for keys in sent for key in keys]
    assert flat == purge_names(names)
    assert coarse("blog.article.1") in flat


def test_keys_too_long_for_fastly_are_not_sent(fake: FakeAPI) -> None:
    long_instance = "blog.article." + "x" * 1100
    fastly(fake).purge(PurgeBatch(names=[long_instance, "t" * 1025, "frontpage"]))
    [request] = fake.requests
    assert request.body == {"surrogate_keys": [coarse(long_instance), "frontpage"]}


def test_url_purges_one_request_each(fake: FakeAPI) -> None:
    batch = PurgeBatch(urls=["/blog/1/", "/search?q=a&page=2", "café au lait"], host="Example.com")
    fastly(fake).purge(batch)
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/purge/example.com/blog/1/"),
        ("POST", "/purge/example.com/search?q=a&page=2"),
        ("POST", "/purge/example.com/caf%C3%A9%20au%20lait"),
    ]
    for request in fake.requests:
        assert request.header("Fastly-Key") == FASTLY_TOKEN
        assert request.header("Fastly-Soft-Purge") == "1"
        assert request.body is None


def test_absolute_urls_carry_their_host(fake: FakeAPI) -> None:
    fastly(fake).purge(PurgeBatch(urls=["https://cdn.example.org/a.css"], host="example.com"))
    assert [r.path for r in fake.requests] == ["/purge/cdn.example.org/a.css"]


@override_settings(ALLOWED_HOSTS=["*", ".example.com"])
def test_url_purges_without_a_host_are_skipped(
    fake: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """No request host and no plain ALLOWED_HOSTS entry: nothing to address the purge to."""
    with caplog.at_level(logging.WARNING, logger="cachesweeper"):
        fastly(fake).purge(PurgeBatch(urls=["/blog/1/"]))
    assert fake.requests == []
    assert "no host" in caplog.text


def test_names_and_urls_in_one_batch(fake: FakeAPI) -> None:
    fastly(fake).purge(PurgeBatch(names=["frontpage"], urls=["/"], host="example.com"))
    assert [r.path for r in fake.requests] == [f"{SERVICE}/purge", "/purge/example.com/"]


def test_purge_everything(fake: FakeAPI) -> None:
    fastly(fake).purge(PurgeBatch(names=["frontpage"], urls=["/"], everything=True))
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", f"{SERVICE}/purge_all")
    assert request.header("Fastly-Key") == FASTLY_TOKEN
    assert request.header("Fastly-Soft-Purge") is None  # purge_all cannot be soft


# Failures raise, so the worker retries


def test_server_error_raises_with_status_and_excerpt(fake: FakeAPI) -> None:
    fake.mode = "error"
    with pytest.raises(cdn.PurgeFailed, match="HTTP 500: Internal Server Error: upstream boom"):
        fastly(fake).purge(PurgeBatch(names=["frontpage"]))


def test_wrong_token_raises_without_showing_it(fake: FakeAPI) -> None:
    with pytest.raises(cdn.PurgeFailed, match="HTTP 401") as error:
        fastly(fake, api_token="secret-wrong-token").purge(PurgeBatch(names=["frontpage"]))
    assert "secret-wrong-token" not in str(error.value)


def test_failed_status_in_a_200_answer_raises(fake: FakeAPI) -> None:
    fake.mode = "unsuccessful"
    with pytest.raises(cdn.PurgeFailed, match="purge refused"):
        fastly(fake).purge(PurgeBatch(names=["frontpage"]))


def test_url_purge_failure_raises(fake: FakeAPI) -> None:
    fake.mode = "error"
    with pytest.raises(cdn.PurgeFailed, match="HTTP 500"):
        fastly(fake).purge(PurgeBatch(urls=["/"], host="example.com"))


def test_redirect_is_not_followed(fake: FakeAPI) -> None:
    fake.mode = "redirect"
    with pytest.raises(cdn.PurgeFailed, match="HTTP 302"):
        fastly(fake).purge(PurgeBatch(names=["frontpage"]))
    assert len(fake.requests) == 1  # the token went nowhere else


def test_unreachable_api_raises(fake: FakeAPI) -> None:
    with serve("fastly") as gone:
        url = gone.url
    with pytest.raises(cdn.PurgeFailed, match="Fastly POST"):
        fastly(fake, endpoint=url).purge(PurgeBatch(names=["frontpage"]))


def test_slow_api_times_out(fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdn, "TIMEOUT", 0.2)
    fake.mode, fake.delay = "slow", 1.0
    with pytest.raises(cdn.PurgeFailed, match="timed out"):
        fastly(fake).purge(PurgeBatch(names=["frontpage"]))


# With the real worker


def test_worker_delivers_and_retries_until_fastly_answers(fake: FakeAPI) -> None:
    queue = PurgeQueue()
    edge = fastly(fake)
    fake.mode = "error"
    queue.put([edge], names=["blog.article.1"])
    assert not queue.flush(timeout=0.5)
    assert fake.requests  # tried, failed, kept
    fake.mode = "ok"
    assert queue.flush(timeout=5)
    assert fake.requests[-1].body == {"surrogate_keys": purge_names(["blog.article.1"])}


@override_settings(ALLOWED_HOSTS=["*", "www.example.com", "example.com"])
def test_url_purges_outside_a_request_go_to_the_first_plain_allowed_host(fake: FakeAPI) -> None:
    """A sweep from a command or a worker has no request host; its URLs still get purged."""
    fastly(fake).purge(PurgeBatch(urls=["/blog/1/"]))
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/purge/www.example.com/blog/1/")
