"""Browser sessions for the web app: a signed, HttpOnly, SameSite=Strict cookie that holds an HMAC
of the API key it was opened with (never the key) and a CSRF token bound to it.

The cookie is signed with ``DINOSEEK_SESSION_SECRET``, or, when that is unset, with a random secret
kept in ``DINOSEEK_HOME/session_secret`` (mode 0600, created once, atomically), so every gunicorn
worker of one server signs and reads the same cookies. ``api/auth.py`` treats a request carrying a
valid session like one carrying its key, and refuses any request but GET, HEAD and OPTIONS made
with the cookie unless it sends the session's token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from dinoseek.settings import Settings

COOKIE_NAME = "dinoseek_session"
CSRF_HEADER = "X-CSRF-Token"
SECRET_FILE = "session_secret"
LIFETIME = timedelta(hours=12)  # a signed cookie older than this is refused (signature timestamps)


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookies, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)

    def should_set_cookie(self, app: Flask, session_obj) -> bool:
        return session_obj.modified


def session_secret(settings: Settings) -> bytes:
    """The secret that signs session cookies: the setting, else the one under DINOSEEK_HOME (made once)."""
    if settings.session_secret:
        return settings.session_secret.encode()
    path = Path(settings.home) / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(staged, path)  # atomic and refuses to replace: the first worker's secret wins
    except FileExistsError:
        pass
    finally:
        os.unlink(staged)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise RuntimeError(f"{path} holds no usable session secret (delete it to make a new one)")
    return secret


def install(app: Flask, settings: Settings) -> None:
    """Sign the app's session cookies and mark them HttpOnly, SameSite=Strict, Secure over HTTPS."""
    app.secret_key = session_secret(settings)
    app.session_interface = SessionCookies()
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_PATH="/", PERMANENT_SESSION_LIFETIME=LIFETIME)


def key_digest(key: str) -> str:
    """What the cookie holds instead of the key: its HMAC under the cookie secret."""
    return hmac.new(current_app.secret_key, key.encode(), hashlib.sha256).hexdigest()


def open_session(key: str) -> str:
    """Start a session for ``key`` (already checked) and return its new CSRF token."""
    session.clear()
    session.permanent = True
    session["key"] = key_digest(key)
    session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def close_session() -> None:
    """Forget the session (the response clears the cookie)."""
    session.clear()


def session_key_digest() -> str | None:
    """The key digest of this request's session, if it has one."""
    digest = session.get("key")
    return digest if isinstance(digest, str) else None


def csrf_token() -> str | None:
    """The CSRF token of this request's session."""
    token = session.get("csrf")
    return token if isinstance(token, str) else None


def csrf_ok() -> bool:
    """Whether this request sends its session's CSRF token (compared in constant time)."""
    token, sent = csrf_token(), request.headers.get(CSRF_HEADER, "")
    return token is not None and hmac.compare_digest(token.encode(), sent.encode())
