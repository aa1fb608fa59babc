"""The body of a Jinja2 ``{% nocache %}`` hole, rendered alone for a request.

A hole is filled where the page or fragment is served, often in a process
that never rendered its template and with no Jinja context at hand. So its
body is compiled as a template of its own (from a copy of its nodes, on
first use) and rendered with the context Django's Jinja2 backend gives a
template (``request``, ``csrf_input``, ``csrf_token``, the backend's
``context_processors``) plus the captured values, as the Django tag does.
Names set or imported elsewhere in the enclosing template are not seen:
pass them as values or import inside the hole.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest
from django.template import engines
from django.template.backends.jinja2 import Jinja2
from django.template.backends.utils import csrf_input_lazy, csrf_token_lazy
from jinja2 import Environment, Template, nodes

Processor = Callable[[HttpRequest], Mapping[str, Any]]

#: environment -> the context processors of the Django backend that made it.
_processors: weakref.WeakKeyDictionary[Environment, list[Processor]] = weakref.WeakKeyDictionary()


class JinjaHoleBody:
    """A hole's body: its nodes as parsed, compiled into a template when first filled."""

    def __init__(
        self,
        environment: Environment,
        name: str | None,
        filename: str | None,
        body: list[nodes.Node],
    ) -> None:
        self.environment = environment
        self.name = name
        self.filename = filename
        # The enclosing template is compiled from the same nodes: keep a copy of them.
        self.body = copy.deepcopy(body, {id(environment): environment})
        self.template: Template | None = None

    def render_hole(self, values: Mapping[str, Any], request: HttpRequest | None) -> str:
        """The body for ``request``: the backend's context, then ``values``."""
        template = self.template or self._compile()
        context: dict[str, Any] = {}
        if request is not None:
            context["request"] = request
            context["csrf_input"] = csrf_input_lazy(request)
            context["csrf_token"] = csrf_token_lazy(request)
            for processor in processors(self.environment):
                context.update(processor(request))
        context.update(values)
        return template.render(context)

    def _compile(self) -> Template:
        env = self.environment
        tree = nodes.Template(self.body, lineno=1)
        tree.set_environment(env)
        # The enclosing template's name: the same autoescape choice, relative names alike.
        code = env.compile(tree, self.name, self.filename)
        self.template = env.template_class.from_code(env, code, env.make_globals(None))
        return self.template


def processors(environment: Environment) -> list[Processor]:
    """The context processors of the Django Jinja2 backend owning ``environment``; none else."""
    found = _processors.get(environment)
    if found is None:
        found = []
        for backend in engines.all():
            if isinstance(backend, Jinja2) and backend.env is environment:
                found = list(backend.template_context_processors)
                break
        _processors[environment] = found
    return found
