"""Integrations with third-party tools; each imports its tool only when used."""
