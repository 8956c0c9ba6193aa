"""Turning files into model inputs and what the catalog records: read, hash, probe, decode; pHash; local features; the allowed roots."""
