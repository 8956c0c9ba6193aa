"""The ``dinoseek`` command line: the parser of every command, and ``main``.

Exit status 0 when the command did its job (per-file failures are reported, not fatal);
non-zero with a one-line message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dinoseek.cli.backup import add_backup_commands
from dinoseek.cli.errors import UsageError
from dinoseek.cli.library import add_library_commands
from dinoseek.cli.model import add_model_commands
from dinoseek.cli.serve import add_serve_command
from dinoseek.cli.workers import add_worker_commands
from dinoseek.settings import SettingsError
from indexer.catalog.database import CatalogError
from indexer.errors import IndexerError
from indexer.stores import StoreError
from model import CheckpointError

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinoseek", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_model_commands(sub)
    add_library_commands(sub)
    add_worker_commands(sub)
    add_serve_command(sub)
    add_backup_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, SettingsError, CheckpointError, IndexerError, CatalogError, StoreError, ValueError,
            FileNotFoundError) as exc:
        print(f"dinoseek {args.command}: {exc}", file=sys.stderr)
        return 2
