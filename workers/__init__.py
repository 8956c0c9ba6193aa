"""Celery app and tasks (thin wrappers over ``indexer``); the in-process runner for embedded mode."""
