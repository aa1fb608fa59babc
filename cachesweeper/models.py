"""The second import path of the original ``ModelSweeper`` mixin.

cachesweeper defines no models of its own here; the mixin lives in
``cachesweeper.utils``, where the original django-cache-sweeper kept it.
"""

from cachesweeper.utils import ModelSweeper

__all__ = ["ModelSweeper"]
