"""The one error type that stops a benchmark before it measures anything: the user's input cannot work."""

from __future__ import annotations


class BenchmarkInputError(Exception):
    """Bad input (unknown backend, unloadable model, unreachable service): one line for stderr, exit status 2."""
