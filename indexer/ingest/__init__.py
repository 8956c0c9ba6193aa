"""Turning files into model inputs and catalog records: read, hash, probe, decode; pHash; local features; allowed roots."""
