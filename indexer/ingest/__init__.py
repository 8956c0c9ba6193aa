"""Turning files into catalog rows and model inputs: walk, hash, probe, decode."""
