"""A Nexudus-compatible emulator: the WSGI app, its SQLite store, seeds, and the ways to run it.

It stands alone: it imports only the standard library, third-party packages and its own modules (never the
product's), and shares with the product only data: the seed's JSON Schema (`reconciler/schemas/seed.schema.json`)
and the snapshot format. The product reaches it only through `reconciler/target.py` (tests/test_layout.py).
"""
