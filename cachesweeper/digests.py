"""Template-tree digests: a fragment's key changes when a template it includes changes.

A fragment's place already holds a digest of its body. A deploy that edits
``blog/_comment.html`` must also retire the fragments that include it, or
they would keep serving HTML built from the old partial until their tokens
move. So a fragment's key also holds a digest of every template its body
includes or extends by a literal name, followed recursively, as Rails'
cache digests do.

The digest hashes template *contents* only, never paths or modification
times, so every server of a deploy computes the same one. It is the hash of
the sorted ``(name, content hash)`` pairs of every template reached, so it
does not depend on the order templates are met, and a cycle is just a name
met twice. A template that cannot be found counts as missing, and never
breaks the page. A name given by a variable cannot be followed: the tags'
``templates=`` keyword names such templates explicitly.

Digests are computed once per template per process, and forgotten when
Django's autoreloader reports a changed template (``file_changed``, the
signal on which Django resets its cached template loaders), so DEBUG's
runserver picks up an edited partial without a restart.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from django.dispatch import receiver
from django.template import TemplateDoesNotExist, TemplateSyntaxError, engines
from django.template.base import Lexer, TokenType
from django.template.loader_tags import construct_relative_path
from django.utils.autoreload import autoreload_started, file_changed

#: Bumped whenever digests are forgotten: memos made before it are stale.
generation = 0

_LITERAL = re.compile(r"""^(?:"[^"]*"|'[^']*')$""")
_FOLLOWED = ("include", "extends")
_MISSING = "-"

# engine -> template name -> (content hash, names it includes or extends)
_templates: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, tuple[str, ...]]]]
_templates = weakref.WeakKeyDictionary()
_lock = threading.Lock()

Source = Callable[[str], "str | None"]
References = Callable[[str, str], Iterable[str]]


def tree(engine: Any, names: Sequence[str], source_of: Source, references: References) -> str:
    """The digest of the templates ``names`` and of everything they reach by literal name."""
    known = _templates.get(engine)
    if known is None:
        with _lock:
            known = _templates.setdefault(engine, {})
    seen: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue  # a template met twice, or a cycle
        found = known.get(name)
        if found is None:
            found = known[name] = _read(name, source_of, references)
        seen[name] = found[0]
        todo.extend(found[1])
    digest = hashlib.blake2b(digest_size=8)
    for name, content in sorted(seen.items()):
        digest.update(f"{len(name)}:{name}{content}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def forget() -> None:
    """Forget every digest (templates changed on disk); memos check :data:`generation`."""
    global generation
    with _lock:
        _templates.clear()
        generation += 1


def literal_names(bits: Sequence[str], current: str | None) -> list[str]:
    """The template a Django ``{% include %}``/``{% extends %}`` names literally, if it does.

    ``bits`` are the tag's split contents; ``current`` is the name of the
    template it is written in, against which ``"./x.html"`` is resolved.
    """
    if len(bits) < 2 or bits[0] not in _FOLLOWED or not _LITERAL.match(bits[1]):
        return []
    name = bits[1]
    if current and name[1:].startswith(("./", "../")):
        try:
            name = construct_relative_path(current, name)
        except TemplateSyntaxError:
            return []
    return [name[1:-1]]


def django_source(engine: Any) -> Source:
    """Read a template's source through ``engine``'s loaders, without compiling it."""

    def source_of(name: str) -> str | None:
        for loader in engine.template_loaders:
            for origin in loader.get_template_sources(name):
                try:
                    return str(loader.get_contents(origin))
                except TemplateDoesNotExist:
                    continue
        return None

    return source_of


def django_references(name: str, source: str) -> Iterable[str]:
    """The names a Django template includes or extends literally."""
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            yield from literal_names(token.split_contents(), name)


def _read(name: str, source_of: Source, references: References) -> tuple[str, tuple[str, ...]]:
    try:
        source = source_of(name)
    except Exception:  # a loader that fails must not break the page
        source = None
    if source is None:
        return _MISSING, ()
    content = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16)
    try:
        found = tuple(dict.fromkeys(references(name, source)))
    except Exception:  # a template that does not parse renders its own error, not ours
        found = ()
    return content.hexdigest(), found


# -- DEBUG's autoreloader -------------------------------------------------------------


def _jinja_directories() -> set[Path]:
    """Directories of Jinja2 backends, which Django's autoreloader does not watch itself."""
    from django.template.backends.jinja2 import Jinja2  # imports jinja2, an optional package

    cwd = Path.cwd()
    return {
        cwd / Path(directory)
        for backend in engines.all()
        if isinstance(backend, Jinja2)
        for directory in backend.template_dirs
    }


@receiver(autoreload_started, dispatch_uid="cachesweeper.digests.watch")
def _watch(sender: Any, **kwargs: Any) -> None:
    for directory in _jinja_directories():
        sender.watch_dir(directory, "**/*")


@receiver(file_changed, dispatch_uid="cachesweeper.digests.changed")
def _changed(sender: Any, file_path: Path, **kwargs: Any) -> bool | None:
    """A template changed: forget the digests (Django resets its loaders on the same signal).

    A Jinja2 template needs no restart either: Jinja reloads it (``auto_reload``).
    """
    if file_path.suffix == ".py":
        return None
    forget()
    if any(directory in file_path.parents for directory in _jinja_directories()):
        return True
    return None


class Place:
    """Where a fragment is written, and the templates its body names.

    ``text`` names the template, line and body digest; ``templates`` are the
    names the body includes or extends literally, and those its tag names
    with ``templates=``. The place that keys the fragment's entries
    (:meth:`current`) adds their tree's digest, remembered until digests are forgotten.
    """

    __slots__ = ("_current", "_generation", "templates", "text")

    def __init__(self, text: str, templates: Sequence[str] = ()) -> None:
        self.text = text
        self.templates = tuple(dict.fromkeys(templates))
        self._current = text
        self._generation = -1

    def current(self, engine: Any, source_of: Source, references: References) -> str:
        """The place as it keys entries now: its text and its templates' digest."""
        if not self.templates or self._generation == generation:
            return self._current
        current = generation
        self._current = f"{self.text}:{tree(engine, self.templates, source_of, references)}"
        self._generation = current
        return self._current

    def __repr__(self) -> str:
        return f"<Place {self.text} {' '.join(self.templates)}>"


def split_names(value: object) -> list[str]:
    """The template names of a ``templates=`` keyword: separated by spaces or commas."""
    return [name for name in re.split(r"[\s,]+", str(value)) if name]
