"""The Flask REST API: app factory, blueprints, schemas, errors and auth."""
