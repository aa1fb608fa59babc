"""``{% cachesweeper %}`` and ``{% cachesweeper_for %}``.

    {% load cachesweeper %}
    {% cachesweeper comment 500 "comment.xml" %} ... {% endcachesweeper %}
    {% cachesweeper_for comment in comments 500 "comment" %} ... {% endcachesweeper_for %}

The first argument is what the fragment depends on (an instance, a model
class, a QuerySet, a tag, or a list of these), the second the timeout in
seconds (``None`` for no expiry), the rest vary-on values. Keywords:
``using=`` (cache alias), ``grace=`` (seconds of stale-while-revalidate) and
``templates=`` (templates the body shows without naming them literally, see
``cachesweeper.digests``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django import template
from django.conf import settings
from django.http import HttpRequest
from django.template import (
    Context,
    Engine,
    Node,
    NodeList,
    Template,
    TemplateDoesNotExist,
    TemplateSyntaxError,
    engines,
)
from django.template.backends.django import DjangoTemplates
from django.template.base import FilterExpression, Parser, Token, TokenType, Variable
from django.template.context import make_context
from django.utils.safestring import SafeString

from cachesweeper import backends, digests, filling, holes
from cachesweeper.digests import Place
from cachesweeper.entries import Rendered, Slot, serve
from cachesweeper.fragments import fragment_slot
from cachesweeper.lists import serve_list
from cachesweeper.safety import is_preview

register = template.Library()

_KEYWORD = re.compile(r"^(\w+)=(.+)$")
_KEYWORDS = ("using", "grace", "templates")


class CacheSweeperNode(Node):
    def __init__(
        self,
        nodelist: NodeList,
        place: Place,
        target: FilterExpression,
        timeout: FilterExpression,
        vary_on: list[FilterExpression],
        keywords: dict[str, FilterExpression],
    ) -> None:
        self.nodelist = nodelist
        self.place = place
        self.target = target
        self.timeout = timeout
        self.vary_on = vary_on
        self.keywords = keywords

    def render(self, context: Context) -> str:
        slot = fragment_slot(
            _current_place(self.place, context),
            resolve_target(self.target, context, "cachesweeper"),
            resolve_timeout(self.timeout, context, "cachesweeper"),
            [var.resolve(context) for var in self.vary_on],
            **(resolve_keywords(self.keywords, context, "cachesweeper") if self.keywords else {}),
            preview=_previewing(context),
        )
        ((_, payload),) = serve([slot], lambda _: _fragment(self.nodelist.render(context)))
        return SafeString(_finish(payload, context, [slot], lambda: self.nodelist.render(context)))


class CacheSweeperForNode(Node):
    child_nodelists = ("nodelist_loop", "nodelist_empty")

    def __init__(
        self,
        nodelist_loop: NodeList,
        nodelist_empty: NodeList,
        place: Place,
        loopvar: str,
        sequence: FilterExpression,
        timeout: FilterExpression,
        vary_on: list[FilterExpression],
        keywords: dict[str, FilterExpression],
    ) -> None:
        self.nodelist_loop = nodelist_loop
        self.nodelist_empty = nodelist_empty
        self.place = place
        self.loopvar = loopvar
        self.sequence = sequence
        self.timeout = timeout
        self.vary_on = vary_on
        self.keywords = keywords
        # Vary-on values that are literals need not be resolved once per item.
        self.constant_vary_on = all(
            not var.filters and not isinstance(var.var, Variable) for var in vary_on
        )

    def render(self, context: Context) -> str:
        items = self.sequence.resolve(context, ignore_failures=True)
        items = [] if items is None else list(items)
        if not items:
            return self.nodelist_empty.render(context)
        timeout = resolve_timeout(self.timeout, context, "cachesweeper_for")
        keywords = resolve_keywords(self.keywords, context, "cachesweeper_for")
        place = _current_place(self.place, context)
        keywords["preview"] = _previewing(context)
        parentloop = context.get("forloop", {})
        count = len(items)
        with context.push():
            slots = []
            if self.constant_vary_on:  # literals only: the same for every item
                vary_on = [var.resolve(context) for var in self.vary_on]
                for item in items:
                    slots.append(fragment_slot(place, item, timeout, vary_on, **keywords))
            else:
                for index, item in enumerate(items):
                    context[self.loopvar] = item
                    context["forloop"] = _forloop(index, count, parentloop)
                    vary_on = [var.resolve(context) for var in self.vary_on]
                    slots.append(fragment_slot(place, item, timeout, vary_on, **keywords))

            def render(index: int) -> Rendered:
                context[self.loopvar] = items[index]
                context["forloop"] = _forloop(index, count, parentloop)
                return _fragment(self.nodelist_loop.render(context))

            def afresh() -> str:
                return "".join(str(render(index).value) for index in range(count))

            return SafeString(_finish(serve_list(slots, render), context, slots, afresh))


@register.tag("cachesweeper")
def do_cachesweeper(parser: Parser, token: Token) -> CacheSweeperNode:
    """``{% cachesweeper dependency timeout [vary_on ...] [using=...] [grace=...] %}``"""
    remaining: list[Token] = list(parser.tokens)  # type: ignore[arg-type]
    nodelist = parser.parse(("endcachesweeper",))
    parser.delete_first_token()
    bits, keywords = _split(parser, token)
    named = _named_templates(keywords, bits[0])
    if len(bits) < 3:
        raise TemplateSyntaxError(
            f"'{bits[0]}' tag requires a dependency and a timeout, "
            "e.g. {% cachesweeper article 600 %}...{% endcachesweeper %}"
        )
    return CacheSweeperNode(
        nodelist,
        _place(parser, token, remaining, named),
        parser.compile_filter(bits[1]),
        parser.compile_filter(bits[2]),
        [parser.compile_filter(bit) for bit in bits[3:]],
        keywords,
    )


@register.tag("cachesweeper_for")
def do_cachesweeper_for(parser: Parser, token: Token) -> CacheSweeperForNode:
    """``{% cachesweeper_for item in items timeout [vary_on ...] [using=...] [grace=...] %}``"""
    bits, keywords = _split(parser, token)
    named = _named_templates(keywords, bits[0])
    if len(bits) < 5 or bits[2] != "in":
        raise TemplateSyntaxError(
            f"'{bits[0]}' tag should look like "
            "{% cachesweeper_for item in items 600 %}...{% endcachesweeper_for %}"
        )
    remaining: list[Token] = list(parser.tokens)  # type: ignore[arg-type]
    nodelist_loop = parser.parse(("empty", "endcachesweeper_for"))
    nodelist_empty = NodeList()
    if parser.next_token().contents == "empty":
        nodelist_empty = parser.parse(("endcachesweeper_for",))
        parser.delete_first_token()
    return CacheSweeperForNode(
        nodelist_loop,
        nodelist_empty,
        _place(parser, token, remaining, named),
        bits[1],
        parser.compile_filter(bits[3]),
        parser.compile_filter(bits[4]),
        [parser.compile_filter(bit) for bit in bits[5:]],
        keywords,
    )


def resolve_target(target: FilterExpression, context: Context, tag: str) -> Any:
    """Resolve the dependency argument, handing model classes over uncalled.

    Django's variable resolution calls callables, and a model class is one:
    ``Article`` would turn into an unsaved ``Article()``. Plain variables are
    therefore looked up here without calling classes. A ``None`` on the way
    (``article.author.profile`` with no author) resolves to ``None``: no
    dependency, as ``{{ article.author.profile }}`` renders nothing.
    """
    var = target.var
    if target.filters or not isinstance(var, Variable) or var.lookups is None:
        return target.resolve(context)
    current: Any = context
    for bit in var.lookups:
        if current is None:
            return None
        current = _lookup(current, bit, str(var.var), tag)
        if callable(current) and not isinstance(current, type):
            if getattr(current, "do_not_call_in_templates", False):
                continue
            if getattr(current, "alters_data", False):
                raise TemplateSyntaxError(f"'{tag}' cannot depend on {var.var!r}: it alters data")
            current = current()
    return current


def resolve_timeout(timeout: FilterExpression, context: Context, tag: str) -> int | None:
    """The timeout in seconds, ``None`` for no expiry; like Django's ``{% cache %}``.

    A bad value raises ``TemplateSyntaxError`` when it is resolved, as ``{% cache %}``
    does; 0 is accepted and, as there, means "do not store".
    """
    value = timeout.resolve(context)
    if value is None:
        return None
    return _seconds(value, "timeout", tag)


def _seconds(value: Any, name: str, tag: str) -> int:
    """``value`` as whole seconds >= 0: a negative one would silently never store."""
    try:
        seconds = int(value)
    except (TypeError, ValueError, OverflowError):
        raise TemplateSyntaxError(
            f"'{tag}' tag got a non-integer {name} value: {value!r}"
        ) from None
    if seconds < 0:
        raise TemplateSyntaxError(
            f"'{tag}' tag got a negative {name} value: {value!r}; use seconds >= 0"
            + (" (or None for no expiry)" if name == "timeout" else "")
        )
    return seconds


def resolve_keywords(
    keywords: dict[str, FilterExpression], context: Context, tag: str
) -> dict[str, Any]:
    resolved: dict[str, Any] = {name: var.resolve(context) for name, var in keywords.items()}
    if "grace" in resolved:
        resolved["grace"] = _seconds(resolved["grace"], "grace", tag)
    if "using" in resolved:
        resolved["using"] = alias = str(resolved["using"])
        if not backends.exists(alias):
            raise TemplateSyntaxError(
                f"'{tag}' tag got an unknown cache alias: using={alias!r} is not in CACHES "
                f"({', '.join(map(repr, settings.CACHES))})"
            )
    return resolved


def _lookup(current: Any, bit: str, full: str, tag: str) -> Any:
    try:
        return current[bit]
    except (TypeError, AttributeError, KeyError, ValueError, IndexError):
        pass
    try:
        if isinstance(current, Context):
            raise AttributeError(bit)
        return getattr(current, bit)
    except AttributeError:
        pass
    try:
        return current[int(bit)]
    except (IndexError, ValueError, KeyError, TypeError):
        raise TemplateSyntaxError(
            f"'{tag}' tag cannot resolve its dependency {full!r}: {bit!r} does not exist"
        ) from None


def _split(parser: Parser, token: Token) -> tuple[list[str], dict[str, FilterExpression]]:
    """Positional bits and ``using=``/``grace=``/``templates=`` keywords of a tag."""
    bits: list[str] = []
    keywords: dict[str, FilterExpression] = {}
    for bit in token.split_contents():
        match = _KEYWORD.match(bit)
        if match is None:
            bits.append(bit)
            continue
        name, value = match.groups()
        if name not in _KEYWORDS:
            raise TemplateSyntaxError(
                f"'{token.split_contents()[0]}' tag got an unknown keyword {name!r}; "
                f"it accepts {', '.join(_KEYWORDS)}"
            )
        if name in keywords:
            raise TemplateSyntaxError(f"'{bits[0]}' tag got {name!r} twice")
        keywords[name] = parser.compile_filter(value)
    return bits, keywords


def _fragment(content: str) -> Rendered:
    return Rendered(content, str(content))


def _previewing(context: Context) -> bool:
    return is_preview(getattr(context, "request", None) or context.get("request"))


def _finish(value: Any, context: Context, slots: Sequence[Slot], afresh: Callable[[], str]) -> str:
    """A served fragment's content; its holes filled here unless something around keeps them."""
    return str(filling.finish(value, getattr(context, "request", None), slots, afresh))


# -- holes ---------------------------------------------------------------------------


class NoCacheNode(Node):
    """``{% nocache [name=value ...] %}``: a hole, rendered for every request.

    See :mod:`cachesweeper.holes`. Its body renders with a fresh request
    context plus the ``name=value`` pairs, resolved where the tag is and
    stored with the cached content.
    """

    def __init__(
        self,
        nodelist: NodeList,
        keywords: dict[str, FilterExpression],
        place: str,
        template_name: str | None,
    ) -> None:
        self.nodelist = nodelist
        self.keywords = keywords
        self.place = place
        self.template_name = template_name
        self.template: Template | None = None  # the template it was rendered in, once known

    def render(self, context: Context) -> str:
        if self.template is None and context.template is not None:
            self.template = context.template
        values = {name: var.resolve(context) for name, var in self.keywords.items()}
        mark = filling.marker(self.place, self.template_name, values)
        if mark is not None:
            return mark
        with context.push(values):
            return self.nodelist.render(context)

    def render_hole(self, values: Mapping[str, Any], request: HttpRequest | None) -> str:
        """The body alone, for ``request``: context processors, then ``values``."""
        template = self.template
        if template is None:  # a page hit in a process that has not rendered this node yet
            template = self.template = _template(self.template_name)
        context = make_context(dict(values), request)
        with context.render_context.push_state(template), context.bind_template(template):
            return self.nodelist.render(context)


def _template(name: str | None) -> Template:
    """A Django template to render a hole within: its own, or an empty one of the default engine.

    Rendering binds it: it decides the engine (for ``{% include %}``) and the
    context processors.
    """
    if name is not None:
        for backend in engines.all():
            if isinstance(backend, DjangoTemplates):
                try:
                    return backend.engine.get_template(name)
                except TemplateDoesNotExist:
                    continue
    return Template("", engine=Engine.get_default())


@register.tag("nocache")
def do_nocache(parser: Parser, token: Token) -> NoCacheNode:
    """``{% nocache [name=value ...] %}...{% endnocache %}``"""
    remaining: list[Token] = list(parser.tokens)  # type: ignore[arg-type]
    bits = token.split_contents()[1:]
    keywords: dict[str, FilterExpression] = {}
    for bit in bits:
        match = _KEYWORD.match(bit)
        if match is None:
            raise TemplateSyntaxError(
                f"'nocache' tag takes only name=value pairs, got {bit!r}; "
                "e.g. {% nocache comment_id=comment.pk %}...{% endnocache %}"
            )
        keywords[match.group(1)] = parser.compile_filter(match.group(2))
    nodelist = parser.parse(("endnocache",))
    parser.delete_first_token()
    place = _place(parser, token, remaining, [])
    origin = parser.origin
    name = str(origin.template_name) if origin is not None and origin.template_name else None
    node = NoCacheNode(nodelist, keywords, f"hole:{place.text}", name)
    holes.register(node.place, node)
    return node


def _place(parser: Parser, token: Token, remaining: list[Token], named: list[str]) -> Place:
    """Where a fragment is written, a digest of its body, and the templates it shows.

    The body digest means that editing a fragment's template (a deploy)
    gives it new entries instead of serving content built from the old
    template, and that two inline templates never share an entry. The
    templates its body includes or extends by a literal name (and those
    ``named`` by ``templates=``) add their own digests when it renders.
    """
    origin = parser.origin
    name = str(origin.template_name or origin.name) if origin is not None else "<unknown>"
    current = str(origin.template_name) if origin is not None and origin.template_name else None
    # Django's parser pops tokens off the end of its list: the body is what went.
    body = remaining[len(parser.tokens) :]
    digest = hashlib.blake2b(digest_size=8)
    templates = list(named)
    for part in body:
        digest.update(f"{part.token_type.value}:{len(part.contents)}:{part.contents}".encode())
        if part.token_type == TokenType.BLOCK:
            templates += digests.literal_names(part.split_contents(), current)
    return Place(f"{name}:{token.lineno}:{digest.hexdigest()}", templates)


def _current_place(place: Place, context: Context) -> str:
    """The place's text and the digest of the templates it shows (from the rendering engine)."""
    if not place.templates or context.template is None:
        return place.text  # a node list rendered without its template: no engine to ask
    engine = context.template.engine
    return place.current(engine, digests.django_source(engine), digests.django_references)


def _named_templates(keywords: dict[str, FilterExpression], tag: str) -> list[str]:
    """The names of ``templates="a.html b.html"``: a literal string, read while parsing."""
    value = keywords.pop("templates", None)
    if value is None:
        return []
    if value.filters or not isinstance(value.var, str):
        raise TemplateSyntaxError(
            f"'{tag}' tag's templates= must be a literal string of template names, "
            'e.g. templates="blog/_comment.html blog/_vote.html"'
        )
    return digests.split_names(value.var)


def _forloop(index: int, length: int, parentloop: Any) -> dict[str, Any]:
    return {
        "counter0": index,
        "counter": index + 1,
        "revcounter": length - index,
        "revcounter0": length - index - 1,
        "first": index == 0,
        "last": index == length - 1,
        "parentloop": parentloop,
    }
