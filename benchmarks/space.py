"""The synthetic space the benchmarks run on lives beside the emulator (the tests use it too)."""

from reconciler.emulator.synthetic import STAMP, build_courses, build_space, write_spec

__all__ = ["STAMP", "build_courses", "build_space", "write_spec"]
