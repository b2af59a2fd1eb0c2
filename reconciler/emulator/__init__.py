"""A Nexudus-compatible emulator: the WSGI app, its SQLite store, seeds, and the ways to run it."""
