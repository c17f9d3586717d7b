"""Helpers shared by the tests (kept out of the installed package)."""
