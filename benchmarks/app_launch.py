"""How fast the app starts, what it weighs, and how fast a 1,000,000-row SELECT shows its page.

Every run is a fresh process of this script (`--child`), running the real app with Textual's real
terminal driver on a pseudo-terminal of 120x40, so a frame is really rendered and written. The
child subclasses DbSandboxApp only to observe it: `post_display_hook` (called after every frame
is written) and a timer note when the wanted state first reaches the screen; nothing in the app
is changed. Times are taken with CLOCK_MONOTONIC, which is shared by all processes on Linux, so
"launch" runs from just before this script spawns the child (interpreter start and imports
included) to the end of the frame.

- launch: `dbsandbox` as a learner starts it (scenario picker up, free play behind it). First
  frame = the first frame written; first full frame = the first frame with the picker laid out
  on top of the main screen. Then the sandbox opens in its worker; "ready" = the sandbox is open
  and the schema pane filled. RSS is read from /proc/self/status at both moments.
- select: once a table `big` of --rows rows exists (created through the app's own run path) and
  the editor holds `SELECT * FROM big;`, this script writes F5's key sequence to the terminal;
  the time runs until the frame whose results caption says "500 rows shown, more rows exist" is
  written. Also the same for a `WITH RECURSIVE` query generating the rows (no table). The peak
  RSS during the SELECT is VmHWM after resetting it (/proc/self/clear_refs) just before F5.

    .venv/bin/python benchmarks/app_launch.py [--runs 7] [--select-runs 3] [--rows 1000000]

Targets: launch to first full frame <= 0.8 s (median, issue 5), memory after launch <= 80 MiB
(issue 12), first page of a 1,000,000-row table within 0.5 s. The launch compared side by side
with another Textual SQL IDE is benchmarks/launch_vs_ide.py.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # as early as this module allows: before any heavy import

import argparse  # noqa: E402  (after the clock on purpose: the child times its own imports)
import fcntl  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pty  # noqa: E402
import select  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import termios  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, LINES = 120, 40
F5 = b"\x1b[15~"  # what an xterm-like terminal sends for F5
CHILD_TIMEOUT_S = 180.0
MIB = 1024 * 1024

TARGET_LAUNCH_S = 0.8
TARGET_RSS_MIB = 80.0  # issue 12: at most 80 MiB after launch
TARGET_FIRST_PAGE_S = 0.5

PAGE_CAPTION = "500 rows shown, more rows exist"
QUERIES = {
    "table": "SELECT * FROM big;",
    "recursive": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
        "SELECT i FROM n;"
    ),
}
CREATE_BIG = (
    "CREATE TABLE big AS "
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) "
    "SELECT i AS id, 'row ' || i AS label, i * 0.5 AS amount FROM s;"
)


# ---------------------------------------------------------------------- memory (Linux /proc)


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: now, VmHWM: peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Make VmHWM start again from the current RSS (Linux 4.0+); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------- the child (the app)


def child(mode: str, fd: int, rows: int, query: str) -> None:
    """Run the app on this process's terminal and report times on `fd` as JSON lines."""
    imports_start = time.monotonic()
    from textual.widgets import OptionList, Static, TextArea

    import sandbox.ui.app
    from sandbox.targets import TargetOptions
    from sandbox.ui.app import DbSandboxApp
    from sandbox.ui.screens.dialogs import ScenarioPicker
    from sandbox.ui.widgets.schema import SchemaView

    imported = time.monotonic()
    out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def report(**values: Any) -> None:
        out.write(json.dumps(values) + "\n")

    class Probe(DbSandboxApp):
        """The real app, watched: nothing here changes what it does."""

        # Textual resolves a relative CSS_PATH beside the subclass: point it at the app's own.
        CSS_PATH = str(Path(sandbox.ui.app.__file__).parent / DbSandboxApp.CSS_PATH)

        stage = "launch"
        before = ""
        pressed_at = 0.0
        hwm_reset = False

        def on_mount(self) -> None:  # Textual calls DbSandboxApp.on_mount as well
            self.set_interval(0.005, self.watch_state)

        def post_display_hook(self) -> None:
            now = time.monotonic()
            super().post_display_hook()  # the app starts its sandbox after the first frame
            if self.stage == "launch":
                self.stage = "frame" if mode == "launch" else "shown"
                report(event="first_frame", at=now, rss_kib=status_kib("VmRSS"))
            if self.stage == "frame" and isinstance(self.screen, ScenarioPicker):
                options = self.screen.query(OptionList)
                if options and options.first().region.height > 0:
                    self.stage = "shown"
                    rss, anon = status_kib("VmRSS"), status_kib("RssAnon")
                    report(event="full_frame", at=now, rss_kib=rss, anon_kib=anon)
            elif self.stage == "pressed" and PAGE_CAPTION in self.caption():
                self.stage = "done"
                report(
                    event="page_shown",
                    at=now,
                    key_at=self.pressed_at,
                    rss_kib=status_kib("VmRSS"),
                    peak_kib=status_kib("VmHWM"),
                    hwm_reset=self.hwm_reset,
                    caption=self.caption(),
                )
                self.exit()

        def caption(self) -> str:
            return str(self.query_one("#results #caption", Static).render())

        def sandbox_up(self) -> bool:
            if self.sandbox_description is None:
                return False
            return bool(self.query_one("#schema", SchemaView).root.children)

        def statements_idle(self) -> bool:
            return all(w.is_finished for w in self.workers if w.group == "statements")

        def watch_state(self) -> None:
            if self.stage == "shown" and self.sandbox_up():
                self.stage = "ready"
                rss, anon = status_kib("VmRSS"), status_kib("RssAnon")
                report(event="ready", at=time.monotonic(), rss_kib=rss, anon_kib=anon)
                if mode == "launch":
                    self.exit()
                    return
                self.before = self.caption()
                self.run_sql(self.session, CREATE_BIG.format(rows=rows))
                self.stage = "filling"
            elif self.stage == "filling" and self.caption() != self.before:
                if not self.statements_idle():
                    return
                if "error" in self.caption():
                    report(event="error", caption=self.caption())
                    self.exit()
                    return
                editor = self.query_one("#editor", TextArea)
                editor.text = QUERIES[query].format(rows=rows)
                editor.move_cursor((0, 0))
                editor.focus()
                self.stage = "armed"
                self.call_after_refresh(self.arm)

        def arm(self) -> None:
            self.hwm_reset = reset_peak_rss()
            report(event="armed", at=time.monotonic(), rss_kib=status_kib("VmRSS"))

        def action_run(self) -> None:
            if self.stage == "armed":
                self.stage = "pressed"
                self.pressed_at = time.monotonic()
            super().action_run()

    app = Probe(TargetOptions(), pick=mode == "launch")
    report(event="imported", started=STARTED, imports_start=imports_start, imported=imported)
    app.run()
    out.close()
    if app.return_code:
        sys.exit(app.return_code)


# ---------------------------------------------------------------------- the parent


@dataclass
class ChildRun:
    spawned: float
    events: dict[str, dict[str, Any]]
    pressed: float | None = None


def run_child(mode: str, rows: int = 0, query: str = "table") -> ChildRun:
    """One fresh process on a 120x40 pseudo-terminal; for `select`, press F5 when it is armed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    read_end, write_end = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", LINES=str(LINES))
    env.update(COLUMNS=str(COLUMNS))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    command += ["--fd", str(write_end), "--rows", str(rows), "--query", query]
    spawned = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        pass_fds=(write_end,),
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    os.close(write_end)
    screen = bytearray()

    def drain() -> None:  # the terminal's output must be read, or the app blocks writing it
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    run = ChildRun(spawned, {})
    deadline = spawned + CHILD_TIMEOUT_S
    buffer = b""
    try:
        with os.fdopen(read_end, "rb", buffering=0) as reports:
            while True:
                ready, _, _ = select.select(
                    [reports], [], [], max(0.0, deadline - time.monotonic())
                )
                if not ready:
                    raise TimeoutError(f"child ({mode}) gave no report in {CHILD_TIMEOUT_S:.0f} s")
                chunk = reports.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = json.loads(line)
                    run.events[event["event"]] = event
                    if event["event"] == "armed":
                        run.pressed = time.monotonic()
                        os.write(master, F5)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        drainer.join(timeout=5)
    if "error" in run.events:
        raise RuntimeError(f"child ({mode}) failed: {run.events['error']}")
    wanted = {"launch": "ready", "select": "page_shown"}[mode]
    if process.returncode != 0 or wanted not in run.events:
        tail = screen[-3000:].decode("utf-8", "replace")
        raise RuntimeError(
            f"child ({mode}) exited {process.returncode} without reaching {wanted}; "
            f"its terminal ended with:\n{tail}"
        )
    return run


@dataclass
class Figure:
    name: str
    values: list[float]
    unit: str
    target: float | None = None

    def row(self) -> list[str]:
        def show(value: float) -> str:
            return f"{value:.3f}" if self.unit == "s" else f"{value:.1f}"

        median = statistics.median(self.values)
        verdict = ""
        if self.target is not None:
            verdict = "yes" if median <= self.target else "NO"
        target = f"<= {show(self.target)} {self.unit}" if self.target is not None else ""
        return [
            self.name,
            f"{show(median)} {self.unit}",
            f"{show(min(self.values))}-{show(max(self.values))}",
            str(len(self.values)),
            target,
            verdict,
        ]


def table(figures: list[Figure]) -> str:
    head = ["measure", "median", "min-max", "runs", "target", "met"]
    rows = [head] + [f.row() for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def measure(runs: int, select_runs: int, rows: int) -> list[Figure]:
    first_frame, full_frame, ready, imports = [], [], [], []
    rss_frame, rss_ready, anon_frame = [], [], []
    for i in range(runs):
        run = run_child("launch")
        e = run.events
        first_frame.append(e["first_frame"]["at"] - run.spawned)
        full_frame.append(e["full_frame"]["at"] - run.spawned)
        ready.append(e["ready"]["at"] - run.spawned)
        imports.append(e["imported"]["imported"] - run.spawned)
        rss_frame.append(e["full_frame"]["rss_kib"] / 1024)
        rss_ready.append(e["ready"]["rss_kib"] / 1024)
        anon_frame.append(e["full_frame"]["anon_kib"] / 1024)
        print(f"launch run {i + 1}/{runs}: full frame {full_frame[-1]:.3f} s", file=sys.stderr)
    figures = [
        Figure("launch: interpreter + imports", imports, "s"),
        Figure("launch to first frame", first_frame, "s"),
        Figure("launch to first full frame (picker up)", full_frame, "s", TARGET_LAUNCH_S),
        Figure("launch to sandbox ready", ready, "s"),
        Figure("RSS at first full frame", rss_frame, "MiB", TARGET_RSS_MIB),
        Figure("  of which anonymous (not file-backed)", anon_frame, "MiB"),
        Figure("RSS once the sandbox is ready", rss_ready, "MiB", TARGET_RSS_MIB),
    ]
    for query in ("table", "recursive"):
        shown, in_app, before, peak = [], [], [], []
        for i in range(select_runs):
            run = run_child("select", rows, query)
            page = run.events["page_shown"]
            assert run.pressed is not None
            if not page["hwm_reset"]:
                print(
                    "warning: VmHWM could not be reset; peak covers the whole run", file=sys.stderr
                )
            shown.append(page["at"] - run.pressed)
            in_app.append(page["at"] - page["key_at"])
            before.append(run.events["armed"]["rss_kib"] / 1024)
            peak.append(page["peak_kib"] / 1024)
            print(f"select ({query}) run {i + 1}/{select_runs}: {shown[-1]:.3f} s", file=sys.stderr)
        label = f"{rows:,}-row table" if query == "table" else f"WITH RECURSIVE, {rows:,} rows"
        target = TARGET_FIRST_PAGE_S if query == "table" else None
        figures += [
            Figure(f"F5 to first page shown: {label}", shown, "s", target),
            Figure(f"  of which in the app (key to frame): {label}", in_app, "s"),
            Figure(f"  RSS before F5: {label}", before, "MiB"),
            Figure(f"  peak RSS during the SELECT: {label}", peak, "MiB"),
        ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dbsandbox app launch and first-page timings")
    parser.add_argument("--runs", type=int, default=7, help="launch runs (fresh processes)")
    parser.add_argument("--select-runs", type=int, default=3, help="runs per 1M-row SELECT")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", choices=["launch", "select"], help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--query", choices=sorted(QUERIES), default="table", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.fd, args.rows, args.query)
        return 0
    if args.runs < 1 or args.select_runs < 1:
        parser.error("--runs and --select-runs must be at least 1")
    figures = measure(args.runs, args.select_runs, args.rows)
    print(f"dbsandbox app at {COLUMNS}x{LINES} on a pseudo-terminal, SQLite sandbox")
    print(table(figures))
    met = [f for f in figures if f.target is not None]
    failed = [f.name for f in met if statistics.median(f.values) > (f.target or 0)]
    print(f"targets met: {len(met) - len(failed)} of {len(met)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
