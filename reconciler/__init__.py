"""reconciler: course completions as code for Nexudus."""

__version__ = "0.1.0"
