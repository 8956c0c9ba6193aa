"""``python -m dinoseek.cli``: the same as the ``dinoseek`` command."""

import sys

from dinoseek.cli.main import main

sys.exit(main())
