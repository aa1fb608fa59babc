"""Fastly: ``Surrogate-Key`` tags on responses, purges through Fastly's API.

Provider facts this follows (Fastly API and header reference):

- ``Surrogate-Key`` is space-separated; the header may hold 16,384 bytes and
  each key 1,024 bytes. Longer keys are coarsened, never sent.
- ``Surrogate-Control`` sets the CDN's lifetime and is stripped by Fastly
  before the browser sees it, so ``Cache-Control`` stays the browser's.
- ``POST /service/{id}/purge`` with ``{"surrogate_keys": [...]}`` purges up
  to 256 keys at once; ``POST /purge/{host}{path}`` purges one URL;
  ``POST /service/{id}/purge_all`` purges everything (never soft). The
  ``Fastly-Soft-Purge: 1`` header marks content stale instead of removing it,
  so it can still be served while revalidated, or if the origin is down.

ESI (``esi=True``): Fastly processes ESI, but only where its VCL says so, and
it does not announce it. A page with holes is sent with an include per hole
(see :mod:`cachesweeper.esi`) to requests carrying ``Surrogate-Capability:
…="ESI/1.0"``, with ``content="ESI/1.0"`` added to its ``Surrogate-Control``.
The service's custom VCL must, like the shipped ``varnish.vcl``: set that
request header in ``vcl_recv``; run ``esi;`` in ``vcl_fetch`` when the
response's ``Surrogate-Control`` has ``ESI/1.0``; and port the CSRF cookie
handling of ``vcl_deliver`` (restart to the ``X-Cachesweeper-Csrf-Url`` view
for a visitor without the cookie named in ``X-Cachesweeper-Csrf-Cookie``,
pass the cookie to the include requests, deliver its ``Set-Cookie``, strip
the ``X-Cachesweeper-*`` headers), or a first-time visitor's form fails.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured

from cachesweeper.edges import cdn
from cachesweeper.edges.base import (
    PurgeBatch,
    batches,
    purge_names,
)

DEFAULT_ENDPOINT = "https://api.fastly.com"


class Fastly(cdn.CdnEdge):
    """Fastly: ``Surrogate-Key`` on responses, purges by key through the API.

    OPTIONS: ``service_id`` and ``api_token`` (required), ``soft`` (default
    ``True``: mark stale rather than evict), ``endpoint`` (Fastly's API),
    ``esi`` (default ``False``: pages with holes are filled by Django and
    private; ``True``: ESI includes, see the module's docstring).
    """

    tag_header = "Surrogate-Key"
    control_header = "Surrogate-Control"
    separator = " "
    max_header_bytes = 16384
    #: Fastly ignores surrogate keys longer than this.
    max_tag_bytes = 1024
    #: Keys per batch purge call (the API refuses more).
    max_batch = 256
    options: ClassVar[dict[str, Any]] = {
        "service_id": None,
        "api_token": None,
        "soft": True,
        "endpoint": DEFAULT_ENDPOINT,
        "esi": False,
    }

    service_id: str
    api_token: str
    soft: bool
    endpoint: str
    esi: bool

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.service_id = cdn.required(self.label, "service_id", self.service_id)
        self.api_token = cdn.required(self.label, "api_token", self.api_token)
        self.endpoint = cdn.api_endpoint(self.label, self.endpoint)
        self.soft = bool(self.soft)
        if not isinstance(self.esi, bool):
            raise ImproperlyConfigured(f"{self.label}: OPTIONS['esi'] must be True or False")

    def purge(self, batch: PurgeBatch) -> None:
        """Purge everything, or the batch's keys (and coarse tags) and URLs."""
        service = f"{self.endpoint}/service/{quote(self.service_id, safe='')}"
        if batch.everything:
            self._post(f"{service}/purge_all", soft=False)
            return
        keys = cdn.purgeable(purge_names(batch.names), self.max_tag_bytes)
        for chunk in batches(keys, self.max_batch):
            self._post(f"{service}/purge", {"surrogate_keys": chunk})
        for url in batch.urls:
            target = cdn.page(url, batch.host, self.label)
            if target is not None:
                host, path = target
                self._post(f"{self.endpoint}/purge/{host}{path}")

    def _post(self, url: str, body: Any = None, *, soft: bool | None = None) -> None:
        headers = {"Fastly-Key": self.api_token, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.soft if soft is None else soft:
            headers["Fastly-Soft-Purge"] = "1"
        answer = cdn.post(url, headers, body, edge=self.label)
        if isinstance(answer, dict) and answer.get("status") == "fail":
            raise cdn.PurgeFailed(f"{self.label} POST {url}: {answer.get('reason', answer)}")
