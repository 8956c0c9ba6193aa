"""How every command prints: ``--json`` documents on stdout, progress bars on a terminal's stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from tqdm import tqdm


def emit_json(doc: dict) -> None:
    """The command's one JSON document, on stdout."""
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")


def progress_bar(enabled: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm bar on stderr when it is a terminal (an update function and a close); nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    bar = tqdm(total=0, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close
