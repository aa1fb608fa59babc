"""Cloudflare: ``Cache-Tag`` tags on responses, purges through the v4 API.

Provider facts this follows (Cloudflare cache documentation and API reference):

- ``Cache-Tag`` is comma-separated; the whole value may hold 16 KB (about
  1,000 tags) and the purge API takes tags of at most 1,024 bytes. Longer
  tags are coarsened, never sent (a tag that cannot be purged is a purge
  that is missed). Tags are case-insensitive: a wider purge, never a miss.
- ``Cloudflare-CDN-Cache-Control`` sets Cloudflare's lifetime only; it is not
  passed on, so ``Cache-Control`` stays the browser's.
- ``POST /zones/{zone}/purge_cache`` with ``{"tags": [...]}``, ``{"files":
  [absolute URLs]}`` or ``{"purge_everything": true}``. Every answer is an
  envelope whose ``success`` must be ``true``.
- Per-call limits have changed over time: the current documentation allows
  100 tags or URLs per call on every plan; older API references say 30. Tags
  go 100 at a time and a refused call is resent 30 at a time; URLs go 30 at
  a time (Cloudflare counts purges by call, and 30 is accepted everywhere).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from cachesweeper.edges import cdn
from cachesweeper.edges.base import (
    PurgeBatch,
    batches,
    purge_names,
)

DEFAULT_ENDPOINT = "https://api.cloudflare.com/client/v4"


class Cloudflare(cdn.CdnEdge):
    """Cloudflare: ``Cache-Tag`` on responses, purges by tag through the v4 API.

    OPTIONS: ``zone_id`` and ``api_token`` (required), ``endpoint`` (the v4 API).

    Cloudflare does not process ESI, so it has no ``esi`` option: a page with
    holes is filled by Django for each visitor and made private, and
    Cloudflare does not keep it. An ESI page meant for another edge (Varnish
    behind Cloudflare, say) gets ``no-store`` and no tags here, as
    ``EdgeMiddleware`` gives every edge without ``esi``: once assembled it
    holds a visitor's holes.
    """

    tag_header = "Cache-Tag"
    control_header = "Cloudflare-CDN-Cache-Control"
    separator = ","
    #: "16 KB" in Cloudflare's words; 16,000 is under it whichever KB is meant.
    max_header_bytes = 16000
    #: Cloudflare documents "about 1,000" tags per response; more are coarsened.
    max_tags = 1000
    #: Longest tag the purge API accepts.
    max_tag_bytes = 1024
    #: Tags per purge call, as documented today.
    max_batch = 100
    #: The older per-call limit: refused tag calls are resent in batches this size.
    legacy_batch: ClassVar[int] = 30
    #: URLs per purge call.
    max_urls: ClassVar[int] = 30
    options: ClassVar[dict[str, Any]] = {
        "zone_id": None,
        "api_token": None,
        "endpoint": DEFAULT_ENDPOINT,
    }

    zone_id: str
    api_token: str
    endpoint: str

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.zone_id = cdn.required(self.label, "zone_id", self.zone_id)
        self.api_token = cdn.required(self.label, "api_token", self.api_token)
        self.endpoint = cdn.api_endpoint(self.label, self.endpoint)

    def purge(self, batch: PurgeBatch) -> None:
        """Purge everything, or the batch's tags (and coarse tags) and URLs."""
        if batch.everything:
            self._post({"purge_everything": True})
            return
        tags = cdn.purgeable(purge_names(batch.names), self.max_tag_bytes)
        for chunk in batches(tags, self.max_batch):
            self._post_tags(chunk)
        files = []
        for url in batch.urls:
            target = cdn.page(url, batch.host, self.label)
            if target is not None:
                host, path = target
                scheme = "http" if url.lower().startswith("http://") else "https"
                files.append(f"{scheme}://{host}{path}")
        for chunk in batches(files, self.max_urls):
            self._post({"files": chunk})

    def _post_tags(self, tags: list[str]) -> None:
        try:
            self._post({"tags": tags})
        except cdn.PurgeFailed as error:
            if error.status != 400 or len(tags) <= self.legacy_batch:
                raise
            cdn.logger.info(
                "cachesweeper: %s refused %d tags in one call; resending %d at a time",
                self.label,
                len(tags),
                self.legacy_batch,
            )
            for chunk in batches(tags, self.legacy_batch):
                self._post({"tags": chunk})

    def _post(self, body: dict[str, Any]) -> None:
        url = f"{self.endpoint}/zones/{quote(self.zone_id, safe='')}/purge_cache"
        headers = {
            "Authorization": f"Bearer {self.api_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        answer = cdn.post(url, headers, body, edge=self.label)
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise cdn.PurgeFailed(f"{self.label} purge_cache: {_errors(answer)}")


def _errors(answer: Any) -> str:
    """Cloudflare's ``errors`` list as ``code: message; …``, or why the answer is not one."""
    if not isinstance(answer, dict):
        return "the answer is not a JSON object"
    errors = answer.get("errors") or []
    text = "; ".join(
        f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else str(error)
        for error in errors
    )
    return f"success is {answer.get('success')!r}" + (f" ({text[:200]})" if text else "")
