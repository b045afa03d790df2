"""The error type for mistakes in what a user handed over (files, configs, arguments, arrays).

:class:`UserInputError` is a ``ValueError``, so code that catches ``ValueError`` keeps working; the
command line prints it (and missing, existing or unreadable files) as one line naming the file, key
or argument, while any other exception keeps its traceback: a bug in the package never looks
like a user's mistake.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Something the user gave is wrong; the message says what, where, and what was expected."""


__all__ = ["UserInputError"]
