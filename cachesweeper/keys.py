"""Cache keys: prefixed and hashed, so they are valid on every backend.

Whatever goes into a key (unicode, spaces, newlines, 10 KB of vary-on values)
comes out as a short ASCII string that memcached accepts, and the prefix keeps
entries, tokens and locks from colliding with each other or with the site's
own keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def make_key(prefix: str, kind: str, parts: Iterable[object]) -> str:
    """Return ``<prefix>:<kind>:<digest>`` for an identity made of ``parts``.

    Each part is written with its length in front, which is unambiguous:
    ``("a:b", "c")`` and ``("a", "b:c")`` never hash alike. Callers pass
    ``conf.KEY_PREFIX``: a pure function can be memoised by its arguments.
    """
    identity = "".join(f"{len(text)}:{text}" for text in map(str, parts))
    digest = hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{prefix}:{kind}:{digest.hexdigest()}"
