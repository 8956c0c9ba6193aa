"""The ``dinoseek`` command line: the top layer, over the API, the workers and the services."""

from dinoseek.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
