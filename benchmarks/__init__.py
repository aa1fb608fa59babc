"""Side-by-side benchmarks of cachesweeper and Django's own caching: ``./benchmarks/run``."""
