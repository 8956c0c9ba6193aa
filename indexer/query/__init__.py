"""Queries of a collection: by example picture or image id (``search``), by region (``regions``), two
pictures compared (``compare``)."""

from indexer.query.boxes import check_box, parse_box
from indexer.query.compare import compare_images
from indexer.framing import content_windows, crop_windows
from indexer.query.opening import open_for_query, read_query_file
from indexer.query.regions import RegionQuery, region_by_id, search_region, search_region_files
from indexer.query.search import (
    MAX_K,
    WINDOW_CANDIDATES,
    QueryPicture,
    QueryResult,
    SearchFilters,
    SearchHit,
    ViewEmbedder,
    check_k,
    embed_pictures,
    search_by_id,
    search_files,
    search_picture,
    search_vectors,
    upload_query,
)
from indexer.query.verified import MAX_VERIFY_TOP, VERIFY_TOP, CopyEvidence

__all__ = ["MAX_K", "MAX_VERIFY_TOP", "VERIFY_TOP", "WINDOW_CANDIDATES", "CopyEvidence", "QueryPicture", "QueryResult",
           "RegionQuery", "SearchFilters", "SearchHit", "ViewEmbedder", "check_box", "check_k", "compare_images",
           "content_windows", "crop_windows", "embed_pictures", "open_for_query", "parse_box", "read_query_file",
           "region_by_id", "search_by_id", "search_files", "search_picture", "search_region", "search_region_files",
           "search_vectors", "upload_query"]
