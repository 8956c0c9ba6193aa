"""dinoseek: self-hosted image retrieval on a DINOv2 backbone (settings and the command line)."""

__version__ = "0.1.0"
