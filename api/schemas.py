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
    message = fields.String(allow_none=True)
    errors = fields.List(fields.Nested(JobErrorOut), required=True)


class JobAccepted(Schema):
    job = fields.Nested(JobOut, required=True)


class IndexJobCreate(Schema):
    paths = fields.List(fields.String(validate=validate.Length(min=1, max=4096)), required=True,
                        validate=validate.Length(min=1, max=1000),
                        metadata={"description": "server paths (files or folders) under DINOSEEK_ALLOWED_ROOTS"})
    prune = fields.Boolean(load_default=False)
    force = fields.Boolean(load_default=False, metadata={
        "description": "with prune: prune even when more than half of the paths' images are missing"})


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
    size = fields.Integer(load_default=256, validate=validate.Range(min=16, max=1024))


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
