"""One blueprint per resource; each route parses, calls one ``indexer`` service, and shapes the answer."""
