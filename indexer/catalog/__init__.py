"""The SQL catalog: database engines and sessions, models, the collection-name rule, the schema (Alembic) runner."""
