"""Errors a user can cause: they become a one-line message and exit code 2, never a traceback."""


class UserError(Exception):
    """Bad input from the user (file, URL, option, script): shown as one line."""
