"""The journal's table, and the second import path of the original ``ModelSweeper`` mixin.

:class:`JournaledSweep` is one row of the journal (:mod:`cachesweeper.journal`):
a sweep written in the transaction that made it, deleted once its bump and
purges are done. The mixin lives in ``cachesweeper.utils``, where the
original django-cache-sweeper kept it.
"""

from __future__ import annotations

from django.db import models


class JournaledSweep(models.Model):
    """A sweep not finished yet: its dependency names and URL paths, as JSON lists.

    ``created_at`` and ``claimed_until`` are epoch seconds (plain floats
    compare the same on every database); a relay replays a row only once it
    is a few seconds old and nobody's claim on it is running.
    """

    id = models.BigAutoField(primary_key=True)
    names = models.TextField(default="[]")
    urls = models.TextField(default="[]")
    created_at = models.FloatField()
    claimed_until = models.FloatField(default=0.0)
    claimed_by = models.CharField(max_length=32, blank=True, default="")
    #: The bump landed; only the purges are left.
    bumped = models.BooleanField(default=False)

    class Meta:
        app_label = "cachesweeper"
        db_table = "cachesweeper_journal"
        indexes = [models.Index(fields=["created_at"], name="cachesweeper_journal_created")]

    def __str__(self) -> str:
        return f"journaled sweep {self.pk}"


from cachesweeper.utils import ModelSweeper  # noqa: E402  (after the model: utils imports sweeps)

__all__ = ["JournaledSweep", "ModelSweeper"]
