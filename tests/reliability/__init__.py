"""Reliability and security: load, faults and hostile input, each test reporting figures."""
