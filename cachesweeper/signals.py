"""Signals for observing the cache; every receiver gets ``dependencies=`` (a list of names)."""

from django.dispatch import Signal

#: A fragment was served from its entry. Also ``key=`` (the entry key).
fragment_hit = Signal()
#: A fragment was rendered (no entry, expired, or its tokens moved). Also ``key=``.
fragment_miss = Signal()
#: A stale entry was served during grace while another request re-renders. Also ``key=``.
fragment_stale = Signal()
#: A page (``cache_page``, the site-wide or the WSGI page cache) was served from its
#: entry. Also ``key=`` (the entry key).
page_hit = Signal()
#: A page was rendered (no entry, expired, or its tokens moved). Also ``key=``.
page_miss = Signal()
#: A stale page was served during grace while another request re-renders. Also ``key=``.
page_stale = Signal()
#: Tokens of ``dependencies`` were bumped.
swept = Signal()
#: An edge purge was delivered. Also ``edge=``.
purge_sent = Signal()
#: An edge purge failed (it will be retried or widened). Also ``edge=``, ``error=``.
purge_failed = Signal()
