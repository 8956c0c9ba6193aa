"""Duplicates in three tiers (exact, near, similar): a collection's scan, a picture's check, the saved
groups, and their review (thresholds, decisions, keep rules, reference folders)."""

from indexer.duplicates.check import Match, check_picture, check_upload
from indexer.duplicates.decisions import add_decisions, decisions_csv, list_decisions, undo_decision
from indexer.duplicates.groups import Group, list_groups, saved_groups
from indexer.duplicates.judging import calibration, check_threshold
from indexer.duplicates.keep_rules import apply_rules, suggest
from indexer.duplicates.reference import get_reference_folders, set_reference_folders
from indexer.duplicates.review import apply_thresholds, preview_thresholds, regroup_saved, saved_thresholds
from indexer.duplicates.scan import find_duplicates

__all__ = ["Group", "Match", "add_decisions", "apply_rules", "apply_thresholds", "calibration",
           "check_picture", "check_threshold", "check_upload", "decisions_csv", "find_duplicates",
           "get_reference_folders", "list_decisions", "list_groups", "preview_thresholds", "regroup_saved",
           "saved_groups", "saved_thresholds", "set_reference_folders", "suggest", "undo_decision"]
