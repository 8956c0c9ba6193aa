"""Duplicates in three tiers (exact, near, similar): a collection's scan, a picture's check, the saved groups."""

from indexer.duplicates.check import Match, QueryEmbedder, check_picture, check_upload
from indexer.duplicates.groups import Group, list_groups, saved_groups
from indexer.duplicates.judging import calibration, check_threshold
from indexer.duplicates.scan import find_duplicates

__all__ = ["Group", "Match", "QueryEmbedder", "calibration", "check_picture", "check_threshold", "check_upload",
           "find_duplicates", "list_groups", "saved_groups"]
