"""The original django-cache-sweeper library name: ``{% load cachesweeper_tags %}``."""

from cachesweeper.templatetags.cachesweeper import register

__all__ = ["register"]
