"""Request and response schemas: declared once, used to validate and to write the OpenAPI document."""

from __future__ import annotations

from datetime import timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from indexer.catalog.names import COLLECTION_NAME_PATTERN
from indexer.jobs import STATUSES as JOB_STATUSES
from indexer.query import MAX_K, MAX_VERIFY_TOP, VERIFY_TOP


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("must not contain a NUL byte")


class Base(Schema):
    class Meta:
        unknown = EXCLUDE
        ordered = True


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorResponse(Schema):
    """Every error: ``{"error": {"code", "message", "details"}}``."""

    error = fields.Nested(ErrorBody, required=True)


class CollectionCreate(Schema):
    name = fields.String(required=True, validate=validate.Regexp(COLLECTION_NAME_PATTERN),
                         metadata={"description": "1-128 letters, digits, '_', '-' or '.'", "example": "photos"})


class LastJob(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True)


class CollectionOut(Schema):
    name = fields.String(required=True)
    images = fields.Integer(required=True)
    indexed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    vectors = fields.Integer(required=True)
    missing_vectors = fields.Integer(required=True, metadata={
        "description": "indexed images whose vector the store lacks (a lost store): `dinoseek index` repairs them"})
    missing_patch_vectors = fields.Integer(required=True, metadata={"description": "patch cells of indexed images the store lacks"})
    model = fields.String(allow_none=True, required=True)
    vector_backend = fields.String(required=True, metadata={
        "description": "the kind of store holding its vectors, chosen when it was created: faiss, qdrant-edge or qdrant-server"})
    last_job = fields.Nested(LastJob, allow_none=True, required=True, metadata={"description": "its newest job, of any kind"})


class CollectionList(Schema):
    collections = fields.List(fields.Nested(CollectionOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CollectionQuery(Base):
    cursor = fields.String(load_default=None, validate=[validate.Length(max=128), _no_nul])
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class JobErrorOut(Schema):
    path = fields.String(required=True)
    error = fields.String(required=True)


class JobQuery(Base):
    errors_offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62),
                                   metadata={"description": "errors to skip (in the order they were recorded)"})
    errors_limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000),
                                  metadata={"description": "errors to return"})


class JobOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(list(JOB_STATUSES)))
    collection = fields.String(allow_none=True)
    total = fields.Integer(required=True)
    done = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    indexed = fields.Integer()
    skipped = fields.Integer()
    features_refreshed = fields.Integer()
    message = fields.String(allow_none=True)
    errors = fields.List(fields.Nested(JobErrorOut), required=True)


class JobAccepted(Schema):
    job = fields.Nested(JobOut, required=True)


class IndexJobCreate(Schema):
    paths = fields.List(fields.String(validate=validate.Length(min=1, max=4096)), load_default=list,
                        validate=validate.Length(max=1000),
                        metadata={"description": "server paths (files or folders) under DINOSEEK_ALLOWED_ROOTS"})
    uploads = fields.Boolean(load_default=False, metadata={
        "description": "also the pictures uploaded to this collection (what refreshes their local features "
                       "after an upgrade, as an index of a folder does for its files)"})
    prune = fields.Boolean(load_default=False)
    force = fields.Boolean(load_default=False, metadata={
        "description": "with prune: prune even when more than half of the paths' images are missing"})

    @validates_schema
    def _something_to_index(self, data, **_):
        if not data.get("paths") and not data.get("uploads"):
            raise ValidationError("give the server paths to index, uploads: true, or both", "paths")


class Filters(Base):
    path_prefix = fields.String(load_default=None, validate=[validate.Length(min=1, max=4096), _no_nul])
    taken_after = fields.AwareDateTime(load_default=None, default_timezone=timezone.utc)
    taken_before = fields.AwareDateTime(load_default=None, default_timezone=timezone.utc)
    format = fields.List(fields.String(validate=validate.Length(min=1, max=16)), load_default=list,
                         validate=validate.Length(max=20))


class SearchParams(Filters):
    """``k``, ``threshold`` and filters: JSON keys beside ``image_id``, or form fields beside an image."""

    image_id = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1, max=2**62))
    k = fields.Integer(load_default=10, strict=False, validate=validate.Range(min=1, max=MAX_K))
    threshold = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(min=-1.0, max=1.0))
    verify = fields.Boolean(load_default=True)
    verify_top = fields.Integer(load_default=VERIFY_TOP, strict=False, validate=validate.Range(min=1, max=MAX_VERIFY_TOP))

    @validates_schema
    def _dates_in_order(self, data, **_):
        if data.get("taken_after") and data.get("taken_before") and data["taken_after"] > data["taken_before"]:
            raise ValidationError("taken_after is later than taken_before", "taken_after")


class SearchJson(Schema):
    """The JSON body of a search by an indexed image."""

    image_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**62))
    k = fields.Integer(validate=validate.Range(min=1, max=MAX_K))
    threshold = fields.Float(allow_nan=False, validate=validate.Range(min=-1.0, max=1.0))
    verify = fields.Boolean(metadata={"description": "verify the top candidates against the query (default true); "
                                                     "false gives the plain descriptor order"})
    verify_top = fields.Integer(validate=validate.Range(min=1, max=MAX_VERIFY_TOP),
                                metadata={"description": f"descriptor candidates verified (default {VERIFY_TOP})"})
    path_prefix = fields.String()
    taken_after = fields.DateTime()
    taken_before = fields.DateTime()
    format = fields.List(fields.String())


class SearchUpload(Schema):
    """The multipart form of a search by an uploaded picture."""

    image = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    k = fields.Integer(validate=validate.Range(min=1, max=MAX_K))
    threshold = fields.Float(validate=validate.Range(min=-1.0, max=1.0))
    verify = fields.Boolean(metadata={"description": "verify the top candidates against the query (default true); "
                                                     "false gives the plain descriptor order"})
    verify_top = fields.Integer(validate=validate.Range(min=1, max=MAX_VERIFY_TOP),
                                metadata={"description": f"descriptor candidates verified (default {VERIFY_TOP})"})
    path_prefix = fields.String()
    taken_after = fields.DateTime()
    taken_before = fields.DateTime()
    format = fields.String(metadata={"description": "comma-separated formats, e.g. JPEG,PNG"})


class ImageUpload(Schema):
    files = fields.List(fields.Raw(metadata={"type": "string", "format": "binary"}), required=True)


class Metadata(Schema):
    filename = fields.String(allow_none=True)
    format = fields.String(allow_none=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    sha256 = fields.String(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    taken_at = fields.String(allow_none=True)
    camera = fields.String(allow_none=True)
    indexed_at = fields.String(allow_none=True)


class CopyEvidence(Schema):
    """What verifying a result against the query found (indexer/query/verified.py)."""

    verdict = fields.String(allow_none=True, required=True, validate=validate.OneOf(["copy", "same scene"]))
    copy_probability = fields.Float(required=True)
    inliers = fields.Integer(required=True)
    query_box = fields.List(fields.Integer(), allow_none=True, required=True,
                            metadata={"description": "where the result appears in the query, in the query's pixels"})
    result_box = fields.List(fields.Integer(), allow_none=True, required=True,
                             metadata={"description": "where the query appears in the result, in the result's pixels"})
    mirrored = fields.Boolean(required=True)


class Result(Schema):
    image_id = fields.Integer(required=True)
    path = fields.String(required=True)
    score = fields.Float(required=True, metadata={"description": "the descriptor cosine to the query"})
    box = fields.List(fields.Integer(), allow_none=True, required=True)
    verdict = fields.String(allow_none=True, metadata={"description": "copy, same scene or null, for verified results"})
    evidence = fields.Nested(CopyEvidence, metadata={"description": "present on verified results"})
    metadata = fields.Nested(Metadata)


class Results(Schema):
    results = fields.List(fields.Nested(Result), required=True)


class Evidence(Schema):
    descriptor = fields.Float(required=True)
    normalised = fields.Float(allow_none=True, required=True)
    hash = fields.Float(allow_none=True, required=True)
    geometry = fields.Dict(allow_none=True, required=True)
    copy_probability = fields.Float(allow_none=True, required=True)
    verdict = fields.String()
    pair = fields.List(fields.Integer())


class Match(Result):
    verdict = fields.String(required=True, validate=validate.OneOf(["exact", "near", "similar"]))
    evidence = fields.Nested(Evidence, required=True)


class Matches(Schema):
    threshold = fields.Float(allow_none=True, required=True)
    verdict_model = fields.String(required=True)
    matches = fields.List(fields.Nested(Match), required=True)


class DuplicateScan(Schema):
    threshold = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(min=-1.0, max=1.0))


class GroupOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    score = fields.Float(required=True)
    image_ids = fields.List(fields.Integer(), required=True)
    paths = fields.List(fields.String(), required=True)
    evidence = fields.Nested(Evidence, allow_none=True, required=True)
    metadata = fields.List(fields.Nested(Metadata), required=True, metadata={"description": "each member's, in image_ids' order"})


class GroupPage(Schema):
    groups = fields.List(fields.Nested(GroupOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class GroupQuery(Base):
    cursor = fields.String(load_default=None, validate=[validate.Length(max=18), _no_nul])
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    kind = fields.String(load_default=None, validate=validate.OneOf(["exact", "near", "similar"]))


class ImageOut(Schema):
    id = fields.Integer(required=True)
    collection = fields.String(required=True)
    path = fields.String(required=True)
    status = fields.String(required=True)
    error = fields.String(allow_none=True)
    metadata = fields.Nested(Metadata, required=True)


class ThumbnailQuery(Base):
    size = fields.Integer(load_default=256, validate=validate.Range(min=16, max=2048))


class Health(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "unavailable"]), metadata={
        "description": "ok; degraded: a collection's store lacks vectors of indexed images (checks.collections says "
                       "which; `dinoseek index` repairs it); unavailable (503): a service does not answer"})
    checks = fields.Dict(keys=fields.String(), values=fields.Dict(),
                         metadata={"description": "each service's answer and latency; only to a request with a key"})


class RegionJson(Schema):
    """The JSON body of a region query on an indexed image."""

    image_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**62))
    box = fields.List(fields.Integer(), required=True, validate=validate.Length(equal=4),
                      metadata={"description": "x0, y0, x1, y1 in the image's pixels"})
    k = fields.Integer(validate=validate.Range(min=1, max=MAX_K))


class RegionUpload(Schema):
    """The multipart form of a region query on an uploaded picture."""

    image = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    box = fields.String(required=True, metadata={"description": "x0,y0,x1,y1 in the picture's pixels"})
    k = fields.Integer(validate=validate.Range(min=1, max=MAX_K))


class RegionResults(Schema):
    box = fields.List(fields.Integer(), required=True, metadata={"description": "the query box, clipped"})
    results = fields.List(fields.Nested(Result), required=True)


class SessionOpen(Schema):
    key = fields.String(required=True, validate=[validate.Length(min=1, max=4096), _no_nul],
                        metadata={"description": "an API key (KEY or the key of a KEY:ro entry)"})


class SessionOut(Schema):
    signed_in = fields.Boolean(required=True)
    read_only = fields.Boolean(allow_none=True, required=True)
    csrf_token = fields.String(allow_none=True, required=True,
                               metadata={"description": "send it as X-CSRF-Token on every request but GET with the cookie"})


class CompareQuery(Base):
    a = fields.Integer(required=True, validate=validate.Range(min=1, max=2**62), metadata={"description": "an image id"})
    b = fields.Integer(required=True, validate=validate.Range(min=1, max=2**62),
                       metadata={"description": "another, of the same collection"})


class Heatmap(Schema):
    rows = fields.Integer(required=True)
    cols = fields.Integer(required=True)
    values = fields.List(fields.List(fields.Float()), required=True, metadata={
        "description": "per patch cell, row-major: its best cosine with the other picture's cells, 0..1"})


class Heatmaps(Schema):
    a = fields.Nested(Heatmap, required=True)
    b = fields.Nested(Heatmap, required=True)


class CompareOut(Schema):
    a = fields.Nested(ImageOut, required=True)
    b = fields.Nested(ImageOut, required=True)
    verdict = fields.String(allow_none=True, required=True, metadata={"description": "copy, same scene, or null"})
    exact = fields.Boolean(required=True, metadata={"description": "identical bytes"})
    copy_probability = fields.Float(required=True)
    descriptor = fields.Float(required=True, metadata={"description": "cosine of the two global descriptors"})
    inliers = fields.Integer(required=True, metadata={"description": "keypoint matches the homography agrees with"})
    matches_found = fields.Integer(required=True)
    mirrored = fields.Boolean(required=True)
    box_in_b = fields.List(fields.Integer(), allow_none=True, required=True,
                           metadata={"description": "where a lies in b, in b's pixels (x0, y0, x1, y1)"})
    box_in_a = fields.List(fields.Integer(), allow_none=True, required=True,
                           metadata={"description": "where b lies in a, in a's pixels"})
    matches = fields.List(fields.List(fields.Float()), required=True,
                          metadata={"description": "agreeing matches as [xa, ya, xb, yb] in each picture's pixels (≤ 200)"})
    heatmap = fields.Nested(Heatmaps, allow_none=True, required=True)
    differs = fields.Dict(keys=fields.String(), values=fields.List(fields.Raw()), required=True,
                          metadata={"description": "metadata field → [value in a, value in b], for those that differ"})


class DecisionIn(Base):
    kind = fields.String(required=True, validate=validate.OneOf(["keep", "discard", "not_duplicate"]))
    image_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**62))
    other_image_id = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=2**62),
                                    metadata={"description": "the pair's other image: not_duplicate only"})


class DecisionsIn(Base):
    decisions = fields.List(fields.Nested(DecisionIn), required=True, validate=validate.Length(min=1, max=10_000))


class DecisionOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    image_id = fields.Integer(required=True)
    path = fields.String(allow_none=True, required=True)
    other_image_id = fields.Integer(allow_none=True, required=True)
    other_path = fields.String(allow_none=True, required=True)
    rule = fields.String(allow_none=True, required=True, metadata={"description": "the keep rules that made it"})
    created_at = fields.String(allow_none=True, required=True)
    collection = fields.String()


class TierCounts(Schema):
    groups = fields.Integer(required=True)
    images = fields.Integer(required=True)


class GroupCounts(Schema):
    thresholds = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)
    groups = fields.Integer(required=True)
    images = fields.Integer(required=True)
    by_kind = fields.Dict(keys=fields.String(), values=fields.Nested(TierCounts), required=True)


class DecisionList(Schema):
    decisions = fields.List(fields.Nested(DecisionOut), required=True)
    groups = fields.Nested(GroupCounts, metadata={
        "description": "the saved groups once re-made (a pair marked apart splits its group)"})


class DecisionQuery(Base):
    kind = fields.String(load_default=None, validate=validate.OneOf(["keep", "discard", "not_duplicate"]))
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


class DecisionUndone(Schema):
    decision = fields.Nested(DecisionOut, required=True)
    groups = fields.Nested(GroupCounts, required=True)


class Thresholds(Base):
    near = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1),
                        metadata={"description": "a near pair's copy probability at least this"})
    similar = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=-1, max=1),
                           metadata={"description": "a similar pair's descriptor cosine at least this"})


class ThresholdsIn(Base):
    thresholds = fields.Nested(Thresholds, required=True)


class KeepRuleIn(Base):
    rule = fields.String(required=True, validate=validate.OneOf(
        ["largest_resolution", "largest_file", "oldest", "format_priority", "prefer_folder"]))
    formats = fields.List(fields.String(validate=validate.Length(min=1, max=16)), validate=validate.Length(min=1, max=32),
                          metadata={"description": "format_priority: best first, e.g. [\"HEIC\", \"PNG\", \"JPEG\"]"})
    folder = fields.String(validate=[validate.Length(min=1, max=4096), _no_nul], metadata={"description": "prefer_folder"})


class KeepRulesIn(Base):
    rules = fields.List(fields.Nested(KeepRuleIn), required=True, validate=validate.Length(min=1, max=8))
    group_ids = fields.List(fields.Integer(validate=validate.Range(min=1, max=2**62)), load_default=None,
                            allow_none=True, validate=validate.Length(max=10_000))
    kind = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["exact", "near", "similar"]))


class KeepSuggestion(Schema):
    group_id = fields.Integer(required=True)
    keep = fields.List(fields.Integer(), required=True)
    discard = fields.List(fields.Integer(), required=True)
    reference = fields.List(fields.Integer(), required=True, metadata={"description": "members in a reference folder"})


class KeepSuggestions(Schema):
    groups = fields.List(fields.Nested(KeepSuggestion), required=True)


class ReferenceFolders(Base):
    folders = fields.List(fields.String(validate=[validate.Length(min=1, max=4096), _no_nul]), required=True,
                          validate=validate.Length(max=64), metadata={"description": "absolute folders"})


class TrashIn(Base):
    image_ids = fields.List(fields.Integer(validate=validate.Range(min=1, max=2**62)), required=True,
                            validate=validate.Length(min=1, max=1000))


class TrashEntryOut(Schema):
    id = fields.Integer(required=True)
    image_id = fields.Integer(required=True, metadata={"description": "the id it had in the index"})
    original_path = fields.String(required=True)
    filename = fields.String(allow_none=True, required=True, metadata={"description": "an upload's own file name"})
    trash_path = fields.String(required=True)
    sha256 = fields.String(allow_none=True, required=True)
    size_bytes = fields.Integer(allow_none=True, required=True)
    trashed_at = fields.String(allow_none=True, required=True)
    restored_at = fields.String(allow_none=True, required=True)
    restore_job_id = fields.Integer(allow_none=True, required=True)


class TrashList(Schema):
    entries = fields.List(fields.Nested(TrashEntryOut), required=True)


class TrashQuery(Base):
    restored = fields.Boolean(load_default=False, metadata={"description": "include entries restored already"})


class TrashRestored(Schema):
    entry = fields.Nested(TrashEntryOut, required=True)
    job = fields.Nested(JobOut, required=True, metadata={"description": "the index job that brings it back"})


class ModelOut(Schema):
    name = fields.String(required=True, metadata={"description": "what a re-index names"})
    file = fields.String(required=True)


class ModelList(Schema):
    models = fields.List(fields.Nested(ModelOut), required=True)


class ReindexJobCreate(Base):
    model = fields.String(required=True, validate=[validate.Length(min=1, max=128), _no_nul], metadata={
        "description": "a model name from GET /models (a checkpoint in DINOSEEK_HOME/models or shipped); never a path"})
