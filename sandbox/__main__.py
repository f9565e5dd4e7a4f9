"""`python -m sandbox` runs the same CLI as `dbsandbox`."""

import sys


def entry() -> int:
    """The `dbsandbox` command: a Ctrl+C at any moment ends with one truthful line, never a
    traceback: while the CLI is still being imported (nothing made yet), or one that slips
    past main's own handling (a second Ctrl+C while it reports), whose sandbox is then
    removed and accounted for here."""
    started = False
    before: set[int] = set()
    try:
        from sandbox.cli import main
        from sandbox.lifecycle import existing

        before = existing()  # what main() must not count as its own (the same as main's)
        started = True
        return main()
    except KeyboardInterrupt:
        if not started:
            print("dbsandbox: interrupted before anything was made", file=sys.stderr)
            return 130
    try:
        from sandbox.cli import last_word

        return last_word(130, True, before)
    except KeyboardInterrupt:
        print("dbsandbox: interrupted; run `dbsandbox clean` if a sandbox is left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry())
