"""The SQL catalog: SQLAlchemy models and database engines."""
