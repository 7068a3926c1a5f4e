"""Benchmarks of pigeon on its SQLite broker, side by side with Huey (``make bench``)."""
