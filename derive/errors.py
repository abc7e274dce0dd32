"""Errors that reach the user as one line, with a documented exit code."""

EXIT_OK = 0
EXIT_REFUTED = 1
EXIT_BAD_INPUT = 2


class DeriveError(Exception):
    """A user-facing error: the message is the whole story, no traceback."""

    exit_code = EXIT_BAD_INPUT


class SpecError(DeriveError):
    """A spec that cannot be read or has a wrong value in a field."""
