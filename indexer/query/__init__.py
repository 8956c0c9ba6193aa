"""Queries of a collection: by example picture or image id (``search``), by region (``regions``)."""

from indexer.query.boxes import check_box, parse_box
from indexer.query.opening import open_for_query, read_query_file
from indexer.query.regions import RegionQuery, region_by_id, search_region, search_region_files
from indexer.query.search import (
    MAX_K,
    QueryResult,
    SearchFilters,
    SearchHit,
    check_k,
    embed_pictures,
    search_by_id,
    search_files,
    search_vectors,
)

__all__ = ["MAX_K", "QueryResult", "RegionQuery", "SearchFilters", "SearchHit", "check_box", "check_k", "embed_pictures",
           "open_for_query", "parse_box", "read_query_file", "region_by_id", "search_by_id", "search_files",
           "search_region", "search_region_files", "search_vectors"]
