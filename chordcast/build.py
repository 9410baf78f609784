"""Which build this is (for `chordcast --version` and the chordcast_build_info metric)."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("chordcast")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown"
