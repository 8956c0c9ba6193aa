"""``python -m dinoseek.cli``: the same as the ``dinoseek`` command."""

import sys

from dinoseek.cli.main import main

if __name__ == "__main__":  # not in a spawned child process, which imports this module again
    sys.exit(main())
