"""``dinoseek serve``: the REST API under gunicorn (production), or Flask's server with ``--dev``."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from gunicorn.app.base import BaseApplication

from api import create_app
from dinoseek.settings import load_settings


def gunicorn_application(app_factory, options: dict):
    """A gunicorn application that builds the Flask app in each worker process (after the fork,
    so no torch state crosses it)."""
    class DinoseekServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return app_factory()

    return DinoseekServer()


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or name (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API; refuses to start without API keys unless ``--insecure-no-auth``."""
    settings = load_settings()
    if args.insecure_no_auth and not _loopback(args.host):
        print(f"WARNING: --insecure-no-auth on {args.host}, which is not a loopback address: anyone who can reach "
              f"port {args.port} can read, add and delete images without a key", file=sys.stderr)
    create_app(settings, insecure_no_auth=args.insecure_no_auth).extensions["dinoseek"].close()  # fail fast here

    def factory():
        return create_app(settings, insecure_no_auth=args.insecure_no_auth)

    if args.dev:
        factory().run(host=args.host, port=args.port, threaded=True)
        return 0
    gunicorn_application(factory, {
        "bind": f"{args.host}:{args.port}", "workers": args.workers, "threads": args.threads,
        "worker_class": "gthread", "timeout": args.timeout, "accesslog": "-", "errorlog": "-",
        "limit_request_line": 8190, "graceful_timeout": 30,
    }).run()
    return 0


def add_serve_command(sub) -> None:
    serve = sub.add_parser("serve", help="serve the REST API (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (each loads the model)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker process")
    serve.add_argument("--timeout", type=int, default=120, help="seconds before a silent worker is restarted")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="serve without API keys (a trusted machine only)")
    serve.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    serve.set_defaults(func=cmd_serve)
