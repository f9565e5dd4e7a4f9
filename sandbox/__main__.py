"""`python -m sandbox` runs the same CLI as `dbsandbox`."""

import sys


def entry() -> int:
    """The `dbsandbox` command: a Ctrl+C while the CLI is still being imported (before any
    sandbox exists) ends quietly, like one at any later moment, never with a traceback."""
    try:
        from sandbox.cli import main

        return main()
    except KeyboardInterrupt:
        # Only outside main's own handling (which removes the sandbox and says so): while
        # importing or parsing the command line, before anything exists.
        print("dbsandbox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry())
