"""`python -m sandbox` runs the same CLI as `dbsandbox`."""

import sys


def entry() -> int:
    """The `dbsandbox` command: a Ctrl+C at any moment ends with one truthful line, never a
    traceback: while the CLI is still being imported (nothing made yet), or one that slips
    past main's own handling (a second Ctrl+C while it reports), whose sandbox is then
    removed and accounted for here."""
    started = False
    try:
        from sandbox.cli import main

        started = True
        return main()
    except KeyboardInterrupt:
        if not started:
            print("dbsandbox: interrupted before anything was made", file=sys.stderr)
            return 130
    try:
        from sandbox.cli import last_word

        # A fresh process: every sandbox it has is this command's own.
        return last_word(130, True, set())
    except KeyboardInterrupt:
        print("dbsandbox: interrupted; run `dbsandbox clean` if a sandbox is left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry())
