"""The CLI's own error, in a module of its own so that every command module (and ``python -m
dinoseek.cli``, which loads ``cli`` a second time as ``__main__``) raises the very class ``main`` catches."""


class UsageError(Exception):
    """The command cannot do its job; the message is printed as one line on stderr."""
