"""Archives of a library or a collection: the format, writing (backup, export), reading (restore, import)."""

from indexer.archive.common import ArchiveReport
from indexer.archive.format import ArchiveError, TargetNotEmpty
from indexer.archive.read import import_collection, prepare_restore_target, restore
from indexer.archive.write import backup, export_collection

__all__ = ["ArchiveError", "ArchiveReport", "TargetNotEmpty", "backup", "export_collection", "import_collection",
           "prepare_restore_target", "restore"]
