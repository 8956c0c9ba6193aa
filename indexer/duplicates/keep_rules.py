"""Keep rules: which picture of each duplicate group to keep, by ordered rules (the first decides,
the next break its ties), previewed before they are recorded as keep / discard decisions. Pictures
in a reference folder are always kept and the others of their group discarded; a rule never
discards one. A picture in several groups (a near group inside a similar one) that one of them
keeps is discarded by none."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import select

from indexer.catalog.models import DUPLICATE_KINDS, DuplicateGroup, DuplicateMember, Image
from indexer.duplicates.decisions import MAX_DECISIONS, add_decisions
from indexer.duplicates.reference import in_reference_folders
from indexer.errors import InvalidRequest
from indexer.ingest.roots import is_under
from indexer.library import Library

RULES = ("largest_resolution", "largest_file", "oldest", "format_priority", "prefer_folder")
MAX_RULES = 8
# Pillow's format names and the extensions people know them by
FORMAT_ALIASES = {"JPG": "JPEG", "HEIC": "HEIF", "TIF": "TIFF"}


@dataclass(frozen=True)
class KeepRule:
    """One rule: its name, and its formats (``format_priority``) or folder (``prefer_folder``)."""

    name: str
    formats: tuple[str, ...] = ()
    folder: str | None = None

    def describe(self) -> str:
        detail = ",".join(self.formats) if self.formats else (self.folder or "")
        return f"{self.name}({detail})" if detail else self.name

    def rank(self, image: Image) -> tuple:
        """Sort key: the better picture under this rule sorts first."""
        if self.name == "largest_resolution":
            return (-((image.width or 0) * (image.height or 0)),)
        if self.name == "largest_file":
            return (-(image.size_bytes or 0),)
        if self.name == "oldest":  # capture date when known, else the file's modification time
            taken = image.taken_at.timestamp() if image.taken_at else None
            return (taken is None, taken or 0.0, image.mtime_ns or 0)
        if self.name == "format_priority":
            fmt = (image.format or "").upper()
            return (self.formats.index(fmt) if fmt in self.formats else len(self.formats),)
        return (not is_under(image.path, (self.folder,)),)  # prefer_folder


def parse_rules(rules: list[dict]) -> list[KeepRule]:
    """The rules of a request, or InvalidRequest naming the first wrong one."""
    if not isinstance(rules, list) or not 1 <= len(rules) <= MAX_RULES:
        raise InvalidRequest(f"rules must be a list of 1 to {MAX_RULES} rules")
    out = []
    for n, rule in enumerate(rules):
        name = rule.get("rule") if isinstance(rule, dict) else None
        if name not in RULES:
            raise InvalidRequest(f"rules[{n}].rule must be one of {', '.join(RULES)}, got {name!r}")
        if name == "format_priority":
            formats = rule.get("formats")
            if not isinstance(formats, list) or not formats or not all(isinstance(f, str) and f for f in formats):
                raise InvalidRequest(f"rules[{n}]: format_priority needs formats, e.g. [\"HEIC\", \"PNG\", \"JPEG\"]")
            out.append(KeepRule(name, formats=tuple(FORMAT_ALIASES.get(f.upper(), f.upper()) for f in formats)))
        elif name == "prefer_folder":
            folder = rule.get("folder")
            if not isinstance(folder, str) or not os.path.isabs(folder):
                raise InvalidRequest(f"rules[{n}]: prefer_folder needs an absolute folder, got {folder!r}")
            out.append(KeepRule(name, folder=os.path.normpath(folder)))
        else:
            out.append(KeepRule(name))
    return out


def suggest(library: Library, collection_name: str, rules: list[dict], group_ids: list[int] | None = None,
            kind: str | None = None) -> list[dict]:
    """Per saved group (those of ``group_ids``, or of ``kind``, or all): the pictures to keep and to
    discard under ``rules``."""
    parsed = parse_rules(rules)
    if kind is not None and kind not in DUPLICATE_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(DUPLICATE_KINDS)}, got {kind!r}")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        query = select(DuplicateGroup.id, Image).join(DuplicateMember, DuplicateMember.group_id == DuplicateGroup.id) \
            .join(Image, Image.id == DuplicateMember.image_id).where(DuplicateGroup.collection_id == collection.id)
        if group_ids is not None:
            query = query.where(DuplicateGroup.id.in_(group_ids))
        if kind is not None:
            query = query.where(DuplicateGroup.kind == kind)
        members: dict[int, list[Image]] = {}
        for group_id, image in s.execute(query.order_by(DuplicateGroup.id, Image.id)):
            members.setdefault(group_id, []).append(image)
        out = []
        for group_id, images in members.items():
            reference = [i for i in images if in_reference_folders(collection, i.path)]
            if reference:
                keep = reference
            else:
                keep = [min(images, key=lambda i: (*(key for r in parsed for key in r.rank(i)), i.id))]
            kept = {i.id for i in keep}
            out.append({"group_id": group_id, "keep": sorted(kept),
                        "discard": [i.id for i in images if i.id not in kept], "reference": [i.id for i in reference]})
        kept_somewhere = {i for g in out for i in g["keep"]}  # a picture one group keeps is discarded by none
        for g in out:
            g["keep"] = sorted(set(g["keep"]) | (kept_somewhere & set(g["discard"])))
            g["discard"] = [i for i in g["discard"] if i not in kept_somewhere]
        return out


def apply_rules(library: Library, collection_name: str, rules: list[dict], group_ids: list[int] | None = None,
                kind: str | None = None) -> list[dict]:
    """``suggest``, then record its keep and discard decisions (each naming the rules)."""
    suggestions = suggest(library, collection_name, rules, group_ids, kind)
    named = " > ".join(r.describe() for r in parse_rules(rules))[:255]
    decisions = [{"kind": verdict, "image_id": image_id, "other_image_id": None, "rule": named}
                 for g in suggestions for verdict in ("keep", "discard") for image_id in g[verdict]]
    for start in range(0, len(decisions), MAX_DECISIONS):
        add_decisions(library, collection_name, decisions[start:start + MAX_DECISIONS])
    return suggestions
