"""Reading a catalog database directly, as a test checks what a process left in it."""

from __future__ import annotations

import sqlalchemy

from indexer.catalog.database import make_engine


def catalog_scalar(database_url: str, sql: str, **params) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(sql), params).scalar_one()
    except sqlalchemy.exc.OperationalError:  # the catalog is not there yet
        return 0
    finally:
        engine.dispose()


def chunks_done(database_url: str, job: int) -> int:
    return catalog_scalar(database_url, "select count(*) from job_chunks where job_id = :job and status = 'done'", job=job)
