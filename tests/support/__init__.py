"""Helpers the tests share: photos, processes, services, databases (no test module imports another's)."""
