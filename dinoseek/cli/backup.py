"""CLI commands that move a library or a collection: ``backup``, ``restore``, ``export``, ``import``.

The archive format and what each command promises are in ``docs/BACKUP.md``; the work is done by
``indexer.archive`` (write.py: backup, export; read.py: restore, import).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dinoseek.cli.errors import UsageError
from dinoseek.cli.output import emit_json
from dinoseek.settings import load_settings
from indexer.archive import backup, export_collection, import_collection, prepare_restore_target, restore
from indexer.library import Library


def _existing(path: str) -> str:
    if not Path(path).exists():
        raise UsageError(f"{path} does not exist")
    return path


def _new(path: str) -> str:
    if Path(path).exists() or Path(path).is_symlink():
        raise UsageError(f"{path} already exists; the archive needs a new name")
    return path


def _summary(verb: str, doc: dict) -> str:
    rows = doc["rows"]
    vectors = sum(doc["vectors"].values())
    collections = ", ".join(doc["collections"]) or "no collections"
    return (f"{verb} {doc['archive']}: {collections}; {rows.get('images', 0)} images, "
            f"{sum(rows.values())} catalog rows, {vectors} vectors")


def _print(args: argparse.Namespace, doc: dict, verb: str) -> int:
    if args.json:
        emit_json(doc)
    else:
        print(_summary(verb, doc))
    return 0


def _run(args: argparse.Namespace, work, verb: str, *, restore_target: bool = False) -> int:
    settings = load_settings()
    if restore_target:
        prepare_restore_target(settings)  # a freshly created database gets the schema first
    library = Library(settings)
    try:
        report = work(library)
    finally:
        library.close()
    return _print(args, report.to_json(), verb)


def cmd_backup(args: argparse.Namespace) -> int:
    """The whole library (catalog and vectors) into one archive."""
    out = _new(args.out)
    return _run(args, lambda library: backup(library, out), "wrote")


def cmd_restore(args: argparse.Namespace) -> int:
    """A backup into an empty catalog and empty stores (any database, any vector backend)."""
    archive = _existing(args.archive)
    return _run(args, lambda library: restore(library, archive), "restored", restore_target=True)


def cmd_export(args: argparse.Namespace) -> int:
    """One collection into an archive that `dinoseek import` reads."""
    out = _new(args.out)
    return _run(args, lambda library: export_collection(library, args.collection, out), "wrote")


def cmd_import(args: argparse.Namespace) -> int:
    """An exported collection into this library, under new ids."""
    archive = _existing(args.archive)
    return _run(args, lambda library: import_collection(library, archive, args.as_name), "imported")


def add_backup_commands(sub) -> None:
    backup = sub.add_parser("backup", help="write the whole library (catalog and vectors) to one archive")
    backup.add_argument("out", help="archive to create: a directory, or one file when the name ends in .tar")
    backup.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser("restore", help="restore a backup into an empty catalog and empty vector stores")
    restore.add_argument("archive", help="a directory or .tar written by `dinoseek backup`")
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(func=cmd_restore)

    export = sub.add_parser("export", help="write one collection (rows, models, vectors) to an archive")
    export.add_argument("out", help="archive to create: a directory, or one file when the name ends in .tar")
    export.add_argument("--collection", required=True)
    export.add_argument("--json", action="store_true")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="add an exported collection to this library, under new ids")
    imp.add_argument("archive", help="a directory or .tar written by `dinoseek export`")
    imp.add_argument("--as", dest="as_name", metavar="NAME", help="collection name to import as (default: its own)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_import)
