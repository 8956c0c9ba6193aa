"""The web app that ``dinoseek serve`` serves at ``/``: one page shell and its own ES modules and
styles (package data, no build step, no CDN). Every page talks to the REST API only; the shell and
the static files hold no data, so they need no key (the app signs in through ``/api/v1/session``)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template

PAGES = ("collections", "search", "region", "compare", "duplicates", "trash")
# Same-origin scripts, styles and images only; pictures shown from blob: URLs (a dropped or pasted query).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

blp = Blueprint("web", __name__, static_folder="static", static_url_path="/static", template_folder="templates")


def page(name: str = "collections") -> Response:
    """The app's shell for any of its pages (the scripts read the path and the query string)."""
    return Response(render_template("index.html", page=name), mimetype="text/html")


blp.add_url_rule("/", "index", page)
for _name in PAGES:
    blp.add_url_rule(f"/{_name}", _name, page, defaults={"name": _name})


@blp.after_request
def protect(response: Response) -> Response:
    """No framing, no sniffing, no referrer, and only this origin's code on the app's responses."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def install(app: Flask) -> None:
    """Serve the app at ``/`` (pages) and ``/static/`` (its modules and styles)."""
    app.register_blueprint(blp)
