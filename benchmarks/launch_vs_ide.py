"""Start-up side by side: dbsandbox against the best-known Textual SQL IDE (Harlequin).

Both apps are treated alike, as black boxes: each launch is a fresh process on its own 120x40
pseudo-terminal, started the way a user starts it, on the same SQLite file. The clock runs from
just before the process is spawned until the terminal output first holds every marker of the
app's full first screen (escape sequences stripped); RSS is read from /proc/PID/status at that
moment. Launches alternate A B A B ... in one run, so both see the same machine load, and the
figure that counts is the ratio of the medians (the issue's target: at most 0.5).

- dbsandbox: `dbsandbox --from FILE.db`; full frame = the scenario picker laid out over the
  main screen (its title and its footer drawn).
- Harlequin: `harlequin -a sqlite FILE.db`; full frame = its three panes and the Run Query
  button drawn.

Harlequin is not a dependency of dbsandbox; install it beside it, with the same Textual:

    python3 -m venv /tmp/hq && /tmp/hq/bin/pip install 'harlequin==2.17.0' 'textual==8.2.8'
    .venv/bin/python benchmarks/launch_vs_ide.py --harlequin /tmp/hq/bin/harlequin [--runs 7]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS, LINES = 120, 40
TIMEOUT_S = 60.0
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 80.0
# CSI/OSC/other escape sequences, so that text split by styling reads as it shows on screen.
ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


@dataclass
class App:
    name: str
    command: list[str]
    markers: list[str]
    launches: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)


def make_database(path: Path, rows: int) -> None:
    """A small SQLite file both apps open: a table with rows, so each has a schema to show."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)")
        db.executemany(
            "INSERT INTO accounts (owner, balance) VALUES (?, ?)",
            [(f"owner {i}", i * 10) for i in range(rows)],
        )
    db.close()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def launch(app: App, cwd: Path) -> tuple[float, float]:
    """One fresh launch: seconds from spawn to the full first screen, and RSS then (MiB)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", LINES=str(LINES), COLUMNS=str(COLUMNS))
    spawned = time.monotonic()
    process = subprocess.Popen(
        app.command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    screen = b""
    try:
        while True:
            left = spawned + TIMEOUT_S - time.monotonic()
            ready, _, _ = select.select([master], [], [], max(0.0, left))
            if not ready:
                tail = ESCAPES.sub(b"", screen)[-2000:].decode("utf-8", "replace")
                raise TimeoutError(
                    f"{app.name}: no full screen within {TIMEOUT_S:.0f} s; it showed:\n{tail}"
                )
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                tail = ESCAPES.sub(b"", screen)[-2000:].decode("utf-8", "replace")
                raise RuntimeError(f"{app.name} exited before its full screen:\n{tail}")
            screen += chunk
            text = ESCAPES.sub(b"", screen).decode("utf-8", "replace")
            if all(marker in text for marker in app.markers):
                at = time.monotonic() - spawned
                return at, rss_mib(process.pid)
    finally:
        # SIGTERM: dbsandbox leaves as on ctrl+q (its scratch copy removed); then drain the
        # terminal so neither app blocks writing to it while it exits.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        end = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(master)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dbsandbox start-up against Harlequin, A B A B")
    parser.add_argument("--runs", type=int, default=7, help="launches of each app (at least 5)")
    parser.add_argument(
        "--harlequin",
        default=shutil.which("harlequin"),
        help="the harlequin executable (default: the one on PATH)",
    )
    parser.add_argument(
        "--dbsandbox",
        default=str(Path(sys.executable).parent / "dbsandbox"),
        help="the dbsandbox executable (default: beside this Python)",
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows in the shared SQLite file")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5: the issue asks for at least 5 launches each")
    if not args.harlequin or not Path(args.harlequin).exists():
        parser.error("harlequin not found: install it in its own venv and pass --harlequin PATH")
    if not Path(args.dbsandbox).exists():
        parser.error(f"dbsandbox not found at {args.dbsandbox}: pass --dbsandbox PATH")
    with tempfile.TemporaryDirectory(prefix="launch-vs-ide-") as tmp:
        work = Path(tmp)
        database = work / "shop.db"
        make_database(database, args.rows)
        apps = [
            App(
                "dbsandbox",
                [args.dbsandbox, "--from", str(database)],
                ["Pick a breakage scenario", "esc Free play"],
            ),
            App(
                "harlequin",
                [args.harlequin, "-a", "sqlite", str(database)],
                ["Data Catalog", "Query Editor", "Query Results", "Run Query"],
            ),
        ]
        for run in range(args.runs):
            for app in apps:  # A B A B: both see the same moments of a noisy machine
                seconds, rss = launch(app, work)
                app.launches.append(seconds)
                app.rss_mib.append(rss)
                print(
                    f"run {run + 1}/{args.runs} {app.name}: {seconds:.3f} s, {rss:.1f} MiB",
                    file=sys.stderr,
                )
    ours, theirs = apps
    print(f"launch to first full screen, {COLUMNS}x{LINES} pseudo-terminal, same SQLite file,")
    print(f"{args.runs} alternating launches each (A B A B ...)")
    for app in apps:
        times, sizes = app.launches, app.rss_mib
        print(
            f"  {app.name:<10} median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}); "
            f"RSS median {statistics.median(sizes):.1f} MiB"
        )
    ratio = statistics.median(ours.launches) / statistics.median(theirs.launches)
    memory = statistics.median(ours.rss_mib)
    print(f"ratio dbsandbox / harlequin (medians): {ratio:.2f} (target <= {TARGET_RATIO})")
    print(f"dbsandbox RSS at its full screen: {memory:.1f} MiB (target <= {TARGET_RSS_MIB:.0f})")
    met = ratio <= TARGET_RATIO and memory <= TARGET_RSS_MIB
    print(f"targets met: {'yes' if met else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
