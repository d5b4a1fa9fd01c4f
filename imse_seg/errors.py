"""The user mistakes the toolkit names in one line: a config that asks for what the model or path lacks.

The command-line tools end such a mistake with ``error: ...`` and exit status 2 (:mod:`imse_seg.cli`), so
the message must say what was asked for, what exists instead, and which option to change.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A config naming a module, pattern or method that the model or the task path does not have."""
