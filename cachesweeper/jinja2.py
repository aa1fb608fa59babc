"""The ``cachesweeper`` tags for Jinja2 (and Django's Jinja2 backend).

Add the extension to the environment, e.g. in Django's ``TEMPLATES``::

    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "OPTIONS": {"extensions": ["cachesweeper.jinja2.CacheSweeperExtension"]},
    }

The tags take Jinja's own argument style, comma-separated, keywords as ``name=value``::

    {% cachesweeper article, 600, "detail", request.LANGUAGE_CODE, grace=30 %}
        ...
    {% endcachesweeper %}

    {% cachesweeper_for comment in comments, 500, "comment" %}
        {{ loop.index }} {{ comment.text }}
    {% else %}
        no comments
    {% endcachesweeper_for %}

They behave like their Django counterparts: the first argument is what the
fragment depends on (an instance, a model class, a QuerySet, a tag, or a list
of these), the second the timeout in seconds (``None`` for no expiry), the
rest vary-on values; ``using=`` picks a cache alias and ``grace=`` allows
serving a stale copy while one request re-renders. A fragment's key holds
a digest of its body and of the templates the body includes, imports or
extends by a literal name, recursively; ``templates="a.html b.html"`` names
others (an include by a variable) explicitly (see ``cachesweeper.digests``).
``cachesweeper_for`` caches one fragment per item, reads them all in one
``get_many`` and writes the misses in one ``set_many``. Its vary-on values may
use the loop variable and ``loop``. Like Jinja's ``for``, it takes an ``{% else %}`` block for an
empty sequence, and offers ``loop.index``, ``index0``, ``revindex``,
``revindex0``, ``first``, ``last``, ``length``, ``depth``, ``depth0`` and
``cycle()``; an item's cached fragment keeps the ``loop`` values it was
rendered with.

``{% nocache %}`` marks a hole (see ``cachesweeper.holes``), keywords as
``name=value`` separated by commas::

    <form method="post">{% nocache %}{{ csrf_input }}{% endnocache %}...</form>
    {% nocache comment_id=comment.pk, who=user.pk %}...{% endnocache %}

Inside a cached fragment or page its body is rendered for every request
with the backend's request context plus the given values (see
``cachesweeper.jinja2_holes``); outside anything cached, in place.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from jinja2 import nodes
from jinja2.exceptions import TemplateNotFound, TemplateRuntimeError, UndefinedError
from jinja2.ext import Extension
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.utils import pass_context, pass_eval_context
from markupsafe import Markup

from cachesweeper import backends, digests, filling, holes
from cachesweeper.digests import Place
from cachesweeper.entries import Rendered, Slot, serve
from cachesweeper.fragments import fragment_slot
from cachesweeper.jinja2_holes import JinjaHoleBody
from cachesweeper.lists import serve_list
from cachesweeper.safety import is_preview

__all__ = ["CacheSweeperExtension", "CacheSweeperLoop"]

_NEWLINE = re.compile(r"\r\n|\r|\n")  # Jinja's own line breaks
_PLACES_LIMIT = 4096

_KEYWORDS = ("using", "grace", "templates")
# Statements whose literal template names a fragment's digest follows.
_FOLLOWED = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)

# Names of the parameters of the generated caller macro of ``cachesweeper_for``.
_ITEM = "_cachesweeper_item"
_LOOP = "_cachesweeper_loop"
_MODE = "_cachesweeper_mode"
_SINK = "_cachesweeper_sink"
_RENDER, _PROBE, _EMPTY = "render", "probe", "empty"

_USAGE = {
    "cachesweeper": (
        '{% cachesweeper article, 600, "detail", grace=30 %}...{% endcachesweeper %}'
    ),
    "cachesweeper_for": (
        '{% cachesweeper_for c in comments, 500, "c" %}...{% else %}...{% endcachesweeper_for %}'
    ),
    "nocache": "{% nocache comment_id=comment.pk, who=user.pk %}...{% endnocache %}",
}


class CacheSweeperLoop:
    """The ``loop`` of one ``cachesweeper_for`` item, like Jinja's ``for`` loop variable."""

    depth = 1
    depth0 = 0

    def __init__(self, index0: int, length: int) -> None:
        self.index0 = index0
        self.length = length

    @property
    def index(self) -> int:
        return self.index0 + 1

    @property
    def revindex(self) -> int:
        return self.length - self.index0

    @property
    def revindex0(self) -> int:
        return self.length - self.index0 - 1

    @property
    def first(self) -> bool:
        return self.index0 == 0

    @property
    def last(self) -> bool:
        return self.index0 == self.length - 1

    def cycle(self, *values: Any) -> Any:
        if not values:
            raise TypeError("no items for cycling given")
        return values[self.index0 % len(values)]

    def __repr__(self) -> str:
        return f"<CacheSweeperLoop {self.index}/{self.length}>"


class CacheSweeperExtension(Extension):
    """``{% cachesweeper %}``, ``{% cachesweeper_for %}`` and ``{% nocache %}`` for Jinja2."""

    tags = {"cachesweeper", "cachesweeper_for", "nocache"}

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self._sources = threading.local()
        self._places: dict[tuple[str, tuple[str, ...]], Place] = {}
        self._holes: set[str] = set()  # the places of the holes this environment parsed

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        # The parser does not keep the source: fragments digest their body's lines
        # from it, and a template made from a string (no name) is told apart from
        # other such templates by a digest of all of it. Jinja preprocesses right
        # before it parses, in the same thread.
        self._sources.lines = _NEWLINE.split(source)
        if name is None and filename is None:
            self._sources.digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        return source

    def parse(self, parser: Parser) -> nodes.Node:
        token = next(parser.stream)
        tag, lineno = str(token.value), token.lineno
        if self.environment.is_async:
            parser.fail(f"'{tag}' does not support async environments (enable_async)", lineno)
        if tag == "cachesweeper_for":
            return self._parse_for(parser, tag, lineno)
        if tag == "nocache":
            return self._parse_nocache(parser, tag, lineno)
        positional, keywords = self._arguments(parser, tag, lineno)
        if len(positional) < 2:
            parser.fail(
                f"'{tag}' tag requires a dependency and a timeout, e.g. {_USAGE[tag]}", lineno
            )
        named = _named_templates(keywords)
        body = parser.parse_statements(("name:endcachesweeper",), drop_needle=True)
        text, templates = self._place(parser, lineno, body, named)
        call = self.call_method(
            "_fragment",
            [text, templates, positional[0], positional[1], nodes.List(positional[2:])],
            keywords,
            lineno=lineno,
        )
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _parse_for(self, parser: Parser, tag: str, lineno: int) -> nodes.Node:
        target = parser.parse_assign_target(extra_end_rules=("name:in",))
        names = [target, *target.find_all(nodes.Name)]
        if any(isinstance(name, nodes.Name) and name.name == "loop" for name in names):
            parser.fail(f"'{tag}' cannot assign to the special 'loop' variable", lineno)
        if not parser.stream.skip_if("name:in"):
            parser.fail(f"'{tag}' tag should look like {_USAGE[tag]}", lineno)
        sequence = parser.parse_expression()
        if parser.stream.current.type != "block_end" and not parser.stream.skip_if("comma"):
            parser.fail(
                f"'{tag}' tag arguments are separated by commas, e.g. {_USAGE[tag]}", lineno
            )
        positional, keywords = self._arguments(parser, tag, lineno)
        if not positional:
            parser.fail(
                f"'{tag}' tag requires a timeout after the sequence, e.g. {_USAGE[tag]}", lineno
            )
        named = _named_templates(keywords)
        body = parser.parse_statements(("name:else", "name:endcachesweeper_for"))
        empty: list[nodes.Node] = []
        if next(parser.stream).value == "else":
            empty = parser.parse_statements(("name:endcachesweeper_for",), drop_needle=True)
        text, templates = self._place(parser, lineno, [*body, *empty], named)

        vary_on = positional[1:]
        mode = nodes.Name(_MODE, "load")
        # caller(item, loop, mode, sink): "empty" renders the else block (where the
        # loop variable is not assigned), "probe" evaluates the vary-on values of one
        # item into ``sink`` without rendering, "render" renders the item.
        per_item: list[nodes.Node] = [
            nodes.Assign(target, nodes.Name(_ITEM, "load")),
            nodes.Assign(nodes.Name("loop", "store"), nodes.Name(_LOOP, "load")),
            nodes.If(
                _equals(mode, _PROBE),
                [
                    nodes.ExprStmt(
                        self.call_method("_record", [nodes.Name(_SINK, "load"), *vary_on])
                    )
                ],
                [],
                body,
            ),
        ]
        caller_body: list[nodes.Node] = [nodes.If(_equals(mode, _EMPTY), empty, [], per_item)]
        call = self.call_method(
            "_fragments",
            [text, templates, sequence, positional[0], nodes.Const(bool(vary_on))],
            keywords,
            lineno=lineno,
        )
        params = [nodes.Name(name, "param") for name in (_ITEM, _LOOP, _MODE, _SINK)]
        return nodes.CallBlock(call, params, [], caller_body).set_lineno(lineno)

    def _parse_nocache(self, parser: Parser, tag: str, lineno: int) -> nodes.Node:
        """A hole: a call that leaves a marker when cached, else calls its body in place.

        The body is a caller macro taking the values as parameters, so in
        place it sees them as the filled hole does, and the rest of the
        template's names besides.
        """
        stream = parser.stream
        names: list[str] = []
        values: list[nodes.Pair] = []
        while stream.current.type != "block_end":
            if names:
                if not stream.skip_if("comma"):
                    parser.fail(
                        f"'{tag}' tag arguments are separated by commas, e.g. {_USAGE[tag]}",
                        stream.current.lineno,
                    )
                if stream.current.type == "block_end":
                    break  # a trailing comma
            if stream.current.type != "name" or stream.look().type != "assign":
                parser.fail(
                    f"'{tag}' tag takes only name=value pairs, e.g. {_USAGE[tag]}",
                    stream.current.lineno,
                )
            name = str(stream.current.value)
            if name in names:
                parser.fail(f"'{tag}' tag got {name!r} twice", stream.current.lineno)
            stream.skip(2)
            names.append(name)
            values.append(nodes.Pair(nodes.Const(name), parser.parse_expression()))
        body = parser.parse_statements(("name:endnocache",), drop_needle=True)
        text, _ = self._place(parser, lineno, body, [])
        place = f"hole:{text.value}"
        hole = JinjaHoleBody(self.environment, parser.name, parser.filename, body)
        holes.register(place, hole)
        self._holes.add(place)
        call = self.call_method(
            "_hole", [nodes.Const(place), nodes.Const(parser.name), nodes.Dict(values)]
        )
        params = [nodes.Name(name, "param") for name in names]
        return nodes.CallBlock(call, params, [], body).set_lineno(lineno)

    def _arguments(
        self, parser: Parser, tag: str, lineno: int
    ) -> tuple[list[nodes.Expr], list[nodes.Keyword]]:
        """Comma-separated positional arguments, then ``using=``/``grace=`` keywords."""
        stream = parser.stream
        positional: list[nodes.Expr] = []
        keywords: list[nodes.Keyword] = []
        while stream.current.type != "block_end":
            if positional or keywords:
                if stream.current.type != "comma":
                    parser.fail(
                        f"'{tag}' tag arguments are separated by commas, e.g. {_USAGE[tag]}",
                        stream.current.lineno,
                    )
                next(stream)
                if stream.current.type == "block_end":
                    break  # a trailing comma
            if stream.current.type == "name" and stream.look().type == "assign":
                name = str(stream.current.value)
                if name not in _KEYWORDS:
                    parser.fail(
                        f"'{tag}' tag got an unknown keyword {name!r}; "
                        f"it accepts {', '.join(_KEYWORDS)}",
                        stream.current.lineno,
                    )
                if any(keyword.key == name for keyword in keywords):
                    parser.fail(f"'{tag}' tag got {name!r} twice", stream.current.lineno)
                stream.skip(2)
                value = parser.parse_expression()
                if name == "templates":
                    if not isinstance(value, nodes.Const) or not isinstance(value.value, str):
                        parser.fail(
                            f"'{tag}' tag's templates= must be a literal string of template "
                            'names, e.g. templates="blog/_comment.html blog/_vote.html"',
                            value.lineno,
                        )
                else:
                    _check_constant(parser, tag, name, value)
                keywords.append(nodes.Keyword(name, value, lineno=lineno))
                continue
            if keywords:
                parser.fail(
                    f"'{tag}' tag got a positional argument after a keyword argument",
                    stream.current.lineno,
                )
            value = parser.parse_expression()
            if len(positional) == (0 if tag == "cachesweeper_for" else 1):
                _check_constant(parser, tag, "timeout", value)
            positional.append(value)
        return positional, keywords

    def _place(
        self, parser: Parser, lineno: int, body: list[nodes.Node], named: list[str]
    ) -> tuple[nodes.Const, nodes.Const]:
        """Where a fragment is written with a digest of its body's lines, and what it shows.

        The second value lists the templates its body includes, imports or
        extends by a literal name, and those ``named`` by ``templates=``.
        """
        lines = getattr(self._sources, "lines", [])
        end = parser.stream.current.lineno
        digest = hashlib.blake2b(digest_size=8)
        digest.update("\n".join(lines[lineno - 1 : end]).encode("utf-8", "surrogatepass"))
        templates = list(named)
        for statement in body:
            found = [statement] if isinstance(statement, _FOLLOWED) else []
            for node in [*found, *statement.find_all(_FOLLOWED)]:
                for name in _literal_names(node.template):  # type: ignore[attr-defined]
                    templates.append(self.environment.join_path(name, parser.name or ""))
        text = f"{self._template_name(parser)}:{lineno}:{digest.hexdigest()}"
        return nodes.Const(text), nodes.Const(tuple(dict.fromkeys(templates)))

    def _current_place(self, text: str, templates: tuple[str, ...]) -> str:
        """The place's text and the digest of the templates it shows; no work without any."""
        if not templates:
            return text
        place = self._places.get((text, templates))
        if place is None:
            if len(self._places) >= _PLACES_LIMIT:  # templates made from ever new strings
                self._places.clear()
            place = self._places.setdefault((text, templates), Place(text, templates))
        return place.current(self.environment, self._source_of, self._references)

    def _source_of(self, name: str) -> str | None:
        loader = self.environment.loader
        if loader is None:
            return None
        try:
            source: str = loader.get_source(self.environment, name)[0]
        except TemplateNotFound:
            return None
        return source

    def _references(self, name: str, source: str) -> list[str]:
        found = []
        for node in self.environment.parse(source, name).find_all(_FOLLOWED):
            for reference in _literal_names(node.template):  # type: ignore[attr-defined]
                found.append(self.environment.join_path(reference, name))
        return found

    def _template_name(self, parser: Parser) -> str:
        if parser.name is not None:
            return parser.name
        if parser.filename is not None:
            return parser.filename
        return f"<string {getattr(self._sources, 'digest', '?')}>"

    @pass_context
    def _fragment(
        self,
        context: Context,
        text: str,
        templates: tuple[str, ...],
        target: Any,
        timeout: Any,
        vary_on: Sequence[Any],
        *,
        caller: Callable[[], str],
        using: Any = None,
        grace: Any = None,
    ) -> str:
        tag = "cachesweeper"
        slot = fragment_slot(
            self._current_place(text, templates),
            _dependency(target, tag),
            _timeout(timeout, tag),
            list(vary_on),
            **_keywords(tag, using, grace),
            preview=is_preview(context.get("request")),
        )
        ((_, payload),) = serve([slot], lambda _: _rendered(caller()))
        return _output(context, payload, [slot], caller)

    @pass_context
    def _fragments(
        self,
        context: Context,
        text: str,
        templates: tuple[str, ...],
        sequence: Any,
        timeout: Any,
        probe: bool,
        *,
        caller: Callable[[Any, Any, str, Any], str],
        using: Any = None,
        grace: Any = None,
    ) -> str:
        tag = "cachesweeper_for"
        items = [] if sequence is None else list(sequence)
        if not items:
            return caller(None, None, _EMPTY, None)
        expiry = _timeout(timeout, tag)
        keywords = _keywords(tag, using, grace)
        keywords["preview"] = is_preview(context.get("request"))
        place = self._current_place(text, templates)
        loops = [CacheSweeperLoop(index, len(items)) for index in range(len(items))]
        slots = []
        for item, loop in zip(items, loops, strict=True):
            vary_on: list[Any] = []
            if probe:
                caller(item, loop, _PROBE, vary_on)
            slots.append(fragment_slot(place, item, expiry, vary_on, **keywords))

        def render(index: int) -> Rendered:
            return _rendered(caller(items[index], loops[index], _RENDER, None))

        def afresh() -> str:
            return "".join(str(render(index).value) for index in range(len(items)))

        return _output(context, serve_list(slots, render), slots, afresh)

    def _record(self, sink: list[Any], *values: Any) -> None:
        sink.extend(values)

    @pass_eval_context
    def _hole(
        self,
        eval_ctx: EvalContext,
        place: str,
        template: str | None,
        values: dict[str, Any],
        *,
        caller: Callable[..., str],
    ) -> str:
        if place not in self._holes and template is not None:
            self._reparse(template)  # loaded from a bytecode cache: not parsed here
            self._holes.add(place)
        mark = filling.marker(place, template, values)
        if mark is not None:
            return Markup(mark) if eval_ctx.autoescape else mark
        return caller(**values)

    def _reparse(self, name: str) -> None:
        """Parse a template again, so that its holes' bodies are registered."""
        source = self._source_of(name)
        if source is not None:
            self.environment.parse(source, name)


def _named_templates(keywords: list[nodes.Keyword]) -> list[str]:
    """Take ``templates=`` out of the keywords: its names go into the digest, not the call."""
    for keyword in keywords:
        if keyword.key == "templates":
            keywords.remove(keyword)
            return digests.split_names(keyword.value.as_const())
    return []


def _literal_names(template: nodes.Expr) -> list[str]:
    """The names a ``{% include %}`` (or extends, import) gives literally: one, or a list."""
    if isinstance(template, nodes.Const) and isinstance(template.value, str):
        return [template.value]
    if isinstance(template, (nodes.List, nodes.Tuple)):
        return [name for item in template.items for name in _literal_names(item)]
    return []


def _equals(name: nodes.Name, value: str) -> nodes.Compare:
    return nodes.Compare(name, [nodes.Operand("eq", nodes.Const(value))])


def _check_constant(parser: Parser, tag: str, name: str, value: nodes.Expr) -> None:
    """Reject a literal timeout, ``grace`` or ``using`` of the wrong type while parsing."""
    # A literal ``-5`` is parsed as the negation of the constant 5.
    negated = value.node if isinstance(value, nodes.Neg) else None
    if isinstance(negated, nodes.Const) and (_integer(negated.value) or 0) > 0:
        parser.fail(_negative(tag, name, -negated.value), value.lineno)
    if not isinstance(value, nodes.Const):
        return
    constant = value.value
    if constant is None:
        return  # no expiry for the timeout; the default for the keywords
    if name == "using":
        if not isinstance(constant, str):
            parser.fail(f"'{tag}' tag got a non-string using value: {constant!r}", value.lineno)
        return
    seconds = _integer(constant)
    if seconds is None:
        parser.fail(f"'{tag}' tag got a non-integer {name} value: {constant!r}", value.lineno)
    elif seconds < 0:
        parser.fail(_negative(tag, name, constant), value.lineno)


def _negative(tag: str, name: str, value: Any) -> str:
    """A negative timeout or grace would silently never store: say so."""
    none = " (or None for no expiry)" if name == "timeout" else ""
    return f"'{tag}' tag got a negative {name} value: {value!r}; use seconds >= 0{none}"


def _integer(value: Any) -> int | None:
    """``value`` as seconds, or ``None`` when it is not a whole number of them."""
    if isinstance(value, (bool, Undefined)):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _dependency(target: Any, tag: str) -> Any:
    """The dependency, as given: Jinja calls nothing, so a model class stays a class.

    An attribute of ``None`` (``article.author.profile`` with no author) is
    ``None``, no dependency, as in the Django tag; other undefined names raise.
    """
    if isinstance(target, Undefined):
        if target._undefined_obj is None:
            return None
        raise UndefinedError(
            f"'{tag}' tag cannot resolve its dependency: {target._undefined_message}"
        )
    return target


def _timeout(value: Any, tag: str) -> int | None:
    """The timeout in seconds, ``None`` for no expiry."""
    if value is None:
        return None
    seconds = _integer(value)
    if seconds is None:
        raise TemplateRuntimeError(f"'{tag}' tag got a non-integer timeout value: {value!r}")
    if seconds < 0:
        raise TemplateRuntimeError(_negative(tag, "timeout", value))
    return seconds


def _keywords(tag: str, using: Any, grace: Any) -> dict[str, Any]:
    keywords: dict[str, Any] = {}
    if using is not None:
        if isinstance(using, Undefined):
            raise TemplateRuntimeError(f"'{tag}' tag got an undefined using value")
        keywords["using"] = alias = str(using)
        if not backends.exists(alias):
            raise TemplateRuntimeError(
                f"'{tag}' tag got an unknown cache alias: using={alias!r} is not in CACHES "
                f"({', '.join(map(repr, settings.CACHES))})"
            )
    if grace is not None:
        seconds = _integer(grace)
        if seconds is None:
            raise TemplateRuntimeError(f"'{tag}' tag got a non-integer grace value: {grace!r}")
        if seconds < 0:
            raise TemplateRuntimeError(_negative(tag, "grace", grace))
        keywords["grace"] = seconds
    return keywords


def _rendered(content: str) -> Rendered:
    return Rendered(content, str(content))


def _output(
    context: Context, payload: Any, slots: Sequence[Slot], afresh: Callable[[], str]
) -> str:
    """A served fragment's content, its holes filled unless something around keeps them."""
    request = context.get("request")
    visitor = request if isinstance(request, HttpRequest) else None
    content = str(filling.finish(payload, visitor, slots, afresh))
    # Cached payloads are plain strings; under autoescape they were escaped
    # when rendered, so they are marked safe again.
    return Markup(content) if context.eval_ctx.autoescape else content
