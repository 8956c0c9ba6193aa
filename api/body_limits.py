"""Request body limits: pictures come as multipart uploads (up to DINOSEEK_MAX_UPLOAD_MB); every
other body (JSON parameters) is capped at JSON_BODY_LIMIT before anything parses it, so no key can
make the API build gigabytes of objects."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

JSON_BODY_LIMIT = 1024 * 1024  # bytes of a body that is not a multipart upload


class BodyTooLarge(RequestEntityTooLarge):
    """A non-multipart body over JSON_BODY_LIMIT."""

    description = (f"a request body that is not a multipart upload is limited to {JSON_BODY_LIMIT // 1024} kB "
                   "(send pictures as multipart/form-data)")


def install(app: Flask) -> None:
    """Cap every non-multipart body: by its declared length, or for a chunked one by reading at
    most one byte past the cap (werkzeug cuts a chunked body at the cap silently)."""

    @app.before_request
    def cap_body():
        if request.mimetype == "multipart/form-data":
            return None
        if request.content_length is not None:
            if request.content_length > JSON_BODY_LIMIT:
                raise BodyTooLarge()
            return None
        # a chunked body: read (and keep, for the route) at most one byte past the limit
        request.max_content_length = JSON_BODY_LIMIT + 1
        if len(request.get_data(cache=True)) > JSON_BODY_LIMIT:
            raise BodyTooLarge()
        return None
