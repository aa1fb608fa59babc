"""cachesweeper's test suite; fixtures and the real-server harness are in conftest.py."""
