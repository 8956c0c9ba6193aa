"""What the routes share in one API process: the settings, the ``Library``, and its job dispatcher."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from dinoseek.settings import Settings
from indexer.library import Library
from workers.dispatch import JobDispatcher


@dataclass
class ApiContext:
    """One per app. Jobs go to the workers when a broker is configured, else to one background
    thread of this process (``workers.dispatch``)."""

    settings: Settings
    library: Library
    jobs: JobDispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobDispatcher(self.library)

    def close(self) -> None:
        self.jobs.close()
        self.library.close()


def ctx() -> ApiContext:
    """The context of the app serving this request."""
    return current_app.extensions["dinoseek"]
