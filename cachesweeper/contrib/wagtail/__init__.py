"""Wagtail support: ``"cachesweeper.contrib.wagtail"`` in ``INSTALLED_APPS``, after Wagtail.

Then every page type, snippet and setting is registered (see
:mod:`cachesweeper.contrib.wagtail.registration`), Wagtail's own signals
sweep what a publish, unpublish, move or slug change affects (see
:mod:`cachesweeper.contrib.wagtail.receivers`), and edges purge a page's
URLs on every site it is served on (see :mod:`cachesweeper.contrib.wagtail.purging`).
:func:`cachesweeper.contrib.wagtail.subtrees.sweep_subtree` sweeps a subtree
for what no signal tells (a ``Site`` change, a bulk update).
Previews are never cached: the core refuses requests Wagtail marks as
previews (:func:`cachesweeper.safety.is_preview`).

Nothing is imported here: Django imports this package while apps load.
"""
