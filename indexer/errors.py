"""Errors the service layer raises; the CLI prints them as one line, the API maps them to 4xx."""

from __future__ import annotations


class IndexerError(Exception):
    """Base class: a request the service layer cannot carry out, with a message users can act on."""


class NotFound(IndexerError):
    """A named collection or image id does not exist."""


class InvalidRequest(IndexerError):
    """Arguments are malformed (bad collection name, box outside the image, k out of range...)."""


class ModelMismatch(IndexerError):
    """A collection's vectors came from another model than the one configured now."""


class Busy(IndexerError):
    """Another process holds what this request needs (a collection's embedded stores); retry later."""


class UnusableImage(InvalidRequest):
    """A picture sent or named in a request cannot be decoded, or is over the pixel limit (HTTP 422)."""


class Forbidden(IndexerError):
    """The request names something outside what this server may touch (a path outside the allowed roots)."""


class AlreadyExists(IndexerError):
    """The request would create something that exists already (a collection of that name)."""


class InvalidValue(InvalidRequest):
    """A parameter is not of its form (a box that is not four finite numbers) (HTTP 422)."""


class NotActive(IndexerError):
    """The job has ended (succeeded, failed or cancelled): it can no longer be cancelled (HTTP 409)."""


class JobCancelled(IndexerError):
    """The job this process was running was cancelled (what it had committed stays)."""


class Unavailable(IndexerError):
    """A service the request needs did not answer in time (no worker serves a queue) (HTTP 503)."""
