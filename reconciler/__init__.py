"""reconciler: course completions as code for Nexudus."""

__version__ = "0.1.0"

UNPAIRED = "backslashreplace"
"""How every text the tool writes (standard output and error, plans, journals, pages, snapshots, exports) writes a
lone surrogate, which UTF-8 cannot encode (a server's text cut in the middle of an emoji, read as JSON reads it):
as its escape, `\\ud83d`, which in a JSON string is that same character again."""
