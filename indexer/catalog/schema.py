"""The catalog schema: apply, revert and inspect the Alembic migrations of ``migrations/`` (no alembic.ini needed)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from indexer.catalog.database import Catalog, CatalogError

# the migration scripts are package data of ``migrations`` (found, not imported: they import this package)
SCRIPT_LOCATION = Path(find_spec("migrations").origin).resolve().parent


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(catalog: Catalog) -> str | None:
    with catalog.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(catalog: Catalog, revision: str = "head") -> None:
    """Bring the catalog schema up to ``revision`` (default: the newest)."""
    cfg = alembic_config(catalog.engine)
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(catalog: Catalog, revision: str) -> None:
    """Revert the catalog schema to ``revision`` (``base`` drops every table)."""
    cfg = alembic_config(catalog.engine)
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def ensure_schema(catalog: Catalog) -> None:
    """Embedded SQLite catalogs upgrade themselves; a shared server database must be upgraded on purpose
    (``dinoseek db upgrade``), since several processes and versions may use it."""
    current, head = current_revision(catalog), head_revision()
    if current == head:
        return
    if catalog.is_sqlite:
        upgrade(catalog)
        return
    raise CatalogError(f"catalog schema at {catalog.engine.url.render_as_string()} is at revision "
                       f"{current or 'none'}, this dinoseek needs {head}: run `dinoseek db upgrade`")
