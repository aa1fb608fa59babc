"""Cache keys: prefixed and hashed, so they are valid on every backend.

Whatever goes into a key (unicode, spaces, newlines, 10 KB of vary-on values)
comes out as a short ASCII string that memcached accepts, and the prefix keeps
entries, tokens and locks from colliding with each other or with the site's
own keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from cachesweeper.conf import conf


def make_key(kind: str, parts: Iterable[object]) -> str:
    """Return ``<prefix>:<kind>:<digest>`` for an identity made of ``parts``.

    ``parts`` are serialised as a JSON list of strings, which is unambiguous:
    ``("a:b", "c")`` and ``("a", "b:c")`` never hash alike.
    """
    identity = json.dumps([str(part) for part in parts], ensure_ascii=False)
    digest = hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{conf.KEY_PREFIX}:{kind}:{digest.hexdigest()}"
