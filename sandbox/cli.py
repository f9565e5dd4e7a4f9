"""The `dbsandbox` command line: thin wrappers over library functions.

User mistakes (bad file, bad URL, unknown engine) end as one line on stderr and exit code 2;
SQL errors inside a script are outcomes, reported with exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from sandbox import __version__
from sandbox.errors import UserError
from sandbox.masking import first_line
from sandbox.rendering import escape_controls
from sandbox.userfiles import require_readable

if TYPE_CHECKING:
    from sandbox.export import SessionRecord
    from sandbox.guard.findings import Finding
    from sandbox.options import TargetOptions

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STOPPED = 3  # the guard stopped a script at a dangerous statement
EXIT_LEFT_BEHIND = 4  # it ran, but the sandbox could not be removed (`dbsandbox clean` will)
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


# Upper bounds: a value past them is a typo or a unit mix-up (ms for s), never a lesson, and
# would leave a run hanging for hours or holding millions of rows in memory.
MAX_TIMEOUT_S = 86_400  # 24 hours
MAX_BUSY_TIMEOUT_MS = 600_000  # 10 minutes
MAX_PAGE_SIZE = 100_000


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    if value > MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_TIMEOUT_S:,} seconds (24 hours), not {value:g}"
        )
    return value


def _whole_number(text: str, low: int, high: int, unit: str = "") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}{unit}, not {value:,}")
    return value


def _busy_timeout(text: str) -> int:
    return _whole_number(text, 0, MAX_BUSY_TIMEOUT_MS, " ms (10 minutes)")


def _page_size(text: str) -> int:
    return _whole_number(text, 1, MAX_PAGE_SIZE)


# Bare `dbsandbox` takes play's options under these names: a subcommand's defaults overwrite
# same-named values parsed before it, so `dbsandbox --engine postgres run x.sql` would
# otherwise silently run on SQLite. Kept apart, main() can refuse that mix instead.
APP_PREFIX = "app_"
APP_OPTIONS = {
    "engine": "--engine",
    "url": "--url",
    "from_file": "--from",
    "busy_timeout": "--busy-timeout",
    "statement_timeout": "--statement-timeout",
    "scenarios": "--scenarios",
    "trust": "--trust",
    "progress": "--progress",
}


def _default(prefix: str, value: object) -> object:
    """Before a command, no defaults: an option's presence is what tells main() it was given."""
    return argparse.SUPPRESS if prefix else value


def _add_target_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    group = parser.add_argument_group("where the sandbox lives")
    group.add_argument(
        "--engine",
        dest=f"{prefix}engine",
        choices=("sqlite", "postgres"),
        default=_default(prefix, "sqlite"),
        help="sqlite (default: a temporary file, nothing to install) or postgres",
    )
    group.add_argument(
        "--url",
        dest=f"{prefix}url",
        default=_default(prefix, None),
        metavar="URL",
        help="PostgreSQL server for --engine postgres, as a postgresql:// URL or libpq key=value "
        "pairs (default: DBSANDBOX_POSTGRES_URL or "
        "DATABASE_URL from the environment or ./.env); a scratch database is created there "
        "and dropped on exit",
    )
    group.add_argument(
        "--from",
        dest=f"{prefix}from_file",
        default=_default(prefix, None),
        type=Path,
        metavar="FILE.db",
        help="start from a copy of this SQLite file (the original is never opened for writing)",
    )
    group.add_argument(
        "--busy-timeout",
        dest=f"{prefix}busy_timeout",
        type=_busy_timeout,
        default=_default(prefix, 200),
        metavar="MS",
        help="SQLite: how long a statement waits for a lock before SQLITE_BUSY (default 200, "
        "at most 600000)",
    )


def _add_scenarios_option(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--scenarios",
        dest=f"{prefix}scenarios",
        action="append",
        type=Path,
        default=_default(prefix, []),
        metavar="DIR",
        help="a folder of scenario files to add beside the catalog (a class pack); "
        "repeatable; DBSANDBOX_SCENARIOS adds folders too",
    )


def _add_trust_option(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--trust",
        dest=f"{prefix}trust",
        action="store_true",
        default=_default(prefix, False),
        help="run the Python programs of scenarios from outside the built-in catalog (a "
        "scenario with a Python step is code: without --trust only the catalog's run)",
    )


def _add_engine_choice(parser: argparse.ArgumentParser, verb: str) -> None:
    group = parser.add_argument_group("engines")
    group.add_argument(
        "--engine",
        choices=("sqlite", "postgres", "all"),
        default="all",
        help=f"{verb} one engine, or all of a scenario's engines (default all: PostgreSQL "
        "when a server is named by --url, DBSANDBOX_POSTGRES_URL or DATABASE_URL)",
    )
    group.add_argument(
        "--url",
        metavar="URL",
        help="PostgreSQL server (a scratch database "
        "is made there for each run and dropped after it)",
    )


def _add_app_statement_timeout(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--statement-timeout",
        dest=f"{prefix}statement_timeout",
        type=_seconds,
        default=_default(prefix, 30.0),
        metavar="S",
        help="cancel a statement that runs (not waits on a lock) longer than this; its session "
        "box counts up to it (default 30, at most 86400: 24 hours)",
    )


def _add_progress_option(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--progress",
        dest=f"{prefix}progress",
        type=Path,
        default=_default(prefix, None),
        metavar="FILE",
        help="the file that keeps your progress between launches (default: "
        "DBSANDBOX_PROGRESS, else progress.json in your state directory, "
        "~/.local/state/dbsandbox on Linux)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dbsandbox",
        usage="%(prog)s [--engine sqlite|postgres] [--url URL] [--from FILE.db] "
        "[--busy-timeout MS] [--statement-timeout S]\n                 "
        "[--progress FILE]\n       %(prog)s COMMAND ...",
        description="Practise database mistakes and recoveries on a throwaway database. "
        "Without a COMMAND, dbsandbox opens the terminal app on a fresh SQLite sandbox with the "
        "scenario picker in front (Esc for free play); `dbsandbox --engine postgres [--url URL]` "
        "opens it on a scratch database of a PostgreSQL server instead. Bare `dbsandbox` takes "
        "the same options as `dbsandbox play` and does what it does; a command takes its "
        "options after its name (`dbsandbox run --engine postgres x.sql`).",
        epilog="Exit codes (every command): 0 success; 1 what was checked failed (a scenario's "
        "steps or, with --solution, its checks; lint findings; invalid scenario files); "
        "2 bad input, or the server could not be reached; 3 `run`: the guard stopped a "
        "statement; 4 it ran, but the sandbox could not be removed (`dbsandbox clean` will); "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"dbsandbox {__version__}")
    _add_target_options(parser, APP_PREFIX)
    _add_app_statement_timeout(parser, APP_PREFIX)
    _add_scenarios_option(parser, APP_PREFIX)
    _add_trust_option(parser, APP_PREFIX)
    _add_progress_option(parser, APP_PREFIX)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, prog="dbsandbox"
    )

    run = commands.add_parser(
        "run",
        help="run a SQL script in a fresh sandbox, on one or several sessions",
        description="Run a SQL script in a fresh sandbox. A line `\\session NAME` sends the "
        "statements after it to session NAME (opened on first use; the first is A). "
        "Exit codes: 0 the script ran (SQL errors are outcomes); 1 a scenario's step or "
        "check did not behave as declared; 2 bad input, or the server could not be reached; "
        "3 the guard stopped a statement; 4 it ran, but the sandbox could not be removed "
        "(`dbsandbox clean` will); 130 interrupted.",
    )
    run.add_argument(
        "script",
        metavar="SCRIPT|SCENARIO",
        help="SQL file to run, - for standard input, or a scenario (catalog id or .toml path)",
    )
    _add_target_options(run)
    _add_scenarios_option(run)
    _add_trust_option(run)
    out = run.add_argument_group("output and limits")
    out.add_argument("--format", choices=("text", "json"), default="text", help="report format")
    out.add_argument(
        "--page-size",
        type=_page_size,
        default=100,
        metavar="N",
        help="rows reported per result; more_rows says whether there were more (default 100, "
        "at most 100000)",
    )
    out.add_argument(
        "--statement-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="cancel a statement that runs (not waits) longer than this (default 30, at most "
        "86400: 24 hours)",
    )
    out.add_argument(
        "--wait-timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="how long a statement waiting on a lock may hold up the script (its session's next "
        "statement, or the end of the script) before it is cancelled (default 5, at most 86400)",
    )
    run.add_argument(
        "--yes",
        action="store_true",
        help="run statements the guard flags as dangerous without stopping (their findings and "
        "impact are still reported)",
    )
    run.add_argument(
        "--solution",
        action="store_true",
        help="scenarios: after the breakage, play the reference solution, then the checks",
    )
    run.add_argument(
        "--export",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="after the run, also write the session to PATH: .json the timeline, .sql a script "
        "that `dbsandbox run` replays (no --yes needed), .md a recovery runbook; a path without "
        "a suffix, or a directory, gets all three. Repeatable; a file already there is "
        "overwritten. One line per file written goes to stderr",
    )
    run.set_defaults(handler=_cmd_run)

    trace = commands.add_parser(
        "trace",
        help="run SQLAlchemy programs against a fresh sandbox and show what they sent, one lane "
        "per connection",
        usage="dbsandbox trace [--engine sqlite|postgres] [--url URL] [--from FILE.db] "
        "[--together] [--guard warn|stop] [--format text|json] [--export PATH] "
        "-- python PROGRAM.py [ARGS] [-- python OTHER.py ...]",
        description="Run unmodified SQLAlchemy programs against a fresh sandbox: each finds it "
        "in DATABASE_URL. dbsandbox listens to SQLAlchemy's own events in the programs' "
        "processes (nothing in their code changes) and draws every DBAPI connection as a lane "
        "on the timeline: connect, checkout and checkin, BEGIN (implicit), each statement with "
        "its parameters (secrets masked) and the program's file:line, flushes, COMMIT and "
        "ROLLBACK, errors, and lock waits with the lane that blocks them. Several programs, "
        "separated by --, run one after another (or together with --together). `python` "
        "means the interpreter dbsandbox runs on. Exit codes: 0 every program exited 0; 1 a "
        "program exited otherwise; 2 bad input, or the server could not be reached; 3 the "
        "guard stopped a statement (--guard stop); 4 the sandbox could not be removed; 130 "
        "interrupted.",
    )
    _add_target_options(trace)
    how = trace.add_argument_group("how the programs run")
    how.add_argument(
        "--together",
        action="store_true",
        help="start every program at once (default: one after another, each to its end)",
    )
    how.add_argument(
        "--guard",
        choices=("warn", "stop"),
        default="warn",
        help="warn (default): the guard's findings go on the timeline and the statement runs; "
        "stop: a statement the guard would ask to confirm raises DangerousStatementError in "
        "the program before it reaches the database",
    )
    how.add_argument(
        "--timeout",
        type=_seconds,
        default=120.0,
        metavar="S",
        help="stop a program still running after this long (default 120)",
    )
    trace_out = trace.add_argument_group("output")
    trace_out.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format"
    )
    trace_out.add_argument(
        "--export",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="also write the trace to PATH as `run` does: .json the timeline, .sql a replay "
        "script (parameters written in), .md a runbook; a directory gets all three",
    )
    trace.add_argument(
        "programs",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="the programs to run, each after --",
    )
    trace.set_defaults(handler=_cmd_trace)

    play = commands.add_parser(
        "play",
        help="open the app with a scenario loaded (without one: the scenario picker)",
        description="Open the terminal app on a fresh sandbox, with SCENARIO loaded: its "
        "breakage already happened, and the scenario panel tells the story and checks your "
        "recovery. Plain `dbsandbox` opens the app with the scenario picker in front.",
    )
    play.add_argument("scenario", nargs="?", metavar="SCENARIO", help="catalog id or .toml path")
    _add_target_options(play)
    _add_app_statement_timeout(play)
    _add_scenarios_option(play)
    _add_trust_option(play)
    _add_progress_option(play)
    traced = play.add_argument_group("traced programs")
    traced.add_argument(
        "--trace",
        action="append",
        default=[],
        metavar="PROGRAM.py",
        help="run this SQLAlchemy program (quoted with its arguments: 'app.py --n 3') under "
        "trace against the app's sandbox, which it finds in DATABASE_URL: each of its "
        "connections is a lane on the timeline as it runs, and session A can query what it "
        "wrote. Repeatable (one after another); free play only",
    )
    traced.add_argument(
        "--together",
        action="store_true",
        help="with several --trace: start them all at once",
    )
    play.set_defaults(handler=_cmd_play)

    progress = commands.add_parser(
        "progress",
        help="show which scenarios you have done, your best scores, and what to play next",
        description="Every catalog scenario in the picker's order with its status (done, "
        "attempted, not started), best score, attempts and when it was last played; then "
        "how many are done and the scenario to play next. The app records a scenario each "
        "time you check it. Exit codes: 0 shown; 2 the progress file cannot be read or an "
        "option is wrong; 130 interrupted.",
    )
    progress.add_argument("--format", choices=("text", "json"), default="text")
    progress.add_argument(
        "--engine",
        choices=("sqlite", "postgres"),
        help="suggest as next only a scenario that runs on this engine (default: any)",
    )
    _add_progress_option(progress)
    progress.set_defaults(handler=_cmd_progress)

    scenarios = commands.add_parser(
        "scenarios",
        help="list the breakage scenarios in the catalog",
        description="List the catalog: id, title, difficulty, engines, tags.",
    )
    scenarios.add_argument("--format", choices=("text", "json"), default="text")
    _add_scenarios_option(scenarios)
    _add_trust_option(scenarios)
    scenarios.set_defaults(handler=_cmd_scenarios)

    validate = commands.add_parser(
        "validate",
        help="check scenario files and say exactly what is wrong",
        description="Validate scenario files. Exit codes: 0 all are valid; 1 one line per "
        "problem (file:line: key: message); 2 usage errors; 130 interrupted. A folder is "
        "searched for *.toml files, as the catalog and DBSANDBOX_SCENARIOS are read.",
    )
    validate.add_argument(
        "paths", nargs="+", metavar="PATH", help="scenario .toml files or folders"
    )
    validate.add_argument(
        "--prove",
        action="store_true",
        help="also play each valid scenario on real engines: every check fails on the broken "
        "state, the reference solution passes every check on every variant, and every "
        "process check rejects its counter-example",
    )
    validate.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="report format (json: each file's problems, whether it carries Python code, "
        "and with --prove each proof)",
    )
    _add_engine_choice(validate, "prove on")
    _add_trust_option(validate)
    validate.set_defaults(handler=_cmd_validate)

    new = commands.add_parser(
        "new",
        help="write a scenario skeleton to start from (it validates and proves as written)",
        description="Write ID.toml: a small, complete scenario (story, task, hints, setup, "
        "breakage, solution, checks, a process check with its counter-example, a hidden "
        "variant) to change into your own. Then: dbsandbox validate --prove ID.toml. Exit "
        "codes: 0 written; 2 a bad id, or the file is already there.",
    )
    new.add_argument("id", metavar="ID", help="the scenario id: lower-case letters, digits, -")
    new.add_argument(
        "--dir", type=Path, default=Path("."), metavar="DIR", help="where to write it (default .)"
    )
    new.set_defaults(handler=_cmd_new)

    grade = commands.add_parser(
        "grade",
        help="grade a learner's exported session (.json or .sql) on hidden variants",
        description="Grade handed-in work without the app: the learner's own statements "
        "(from a .json timeline or .sql replay export, or a .sql of their statements) are "
        "replayed after the scenario's breakage on the dataset they saw and on every hidden "
        "variant, on each engine, and scored (docs/teaching.md gives the formula). With "
        "--batch, a class folder (one sub-folder or file per learner) is graded into one CSV. "
        "Exit codes: 0 recovered on every engine graded (for --batch: every submission was "
        "graded); 1 graded, not recovered (--batch: a submission could not be graded); "
        "2 bad input, or the server could not be reached; 130 interrupted.",
    )
    grade.add_argument(
        "scenario",
        nargs="?",
        metavar="SCENARIO",
        help="catalog id or .toml path (with --batch: optional; else read from each export)",
    )
    grade.add_argument("submission", nargs="?", metavar="SUBMISSION", help=".json or .sql export")
    grade.add_argument(
        "--batch", type=Path, metavar="DIR", help="grade every submission in a class folder"
    )
    grade.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="--batch: write one row per learner per "
        "scenario per engine (score and its parts) to FILE",
    )
    grade.add_argument(
        "--result",
        type=Path,
        metavar="FILE",
        help="write the verdict as JSON to FILE (result.json for an autograder)",
    )
    grade.add_argument("--format", choices=("text", "json"), default="text", help="report format")
    _add_engine_choice(grade, "grade on")
    _add_scenarios_option(grade)
    _add_trust_option(grade)
    grade.set_defaults(handler=_cmd_grade)

    lint = commands.add_parser(
        "lint",
        help="lint SQL files for dangerous statements (fit for a pre-commit hook)",
        description="Lint SQL without running it. Exit codes: 0 no finding is an error or a "
        "warning; 1 one is; 2 usage errors or unreadable input; 130 interrupted. A directory "
        "is searched for *.sql files. Alembic's offline SQL (alembic upgrade head --sql | "
        "dbsandbox lint --dialect postgres -) is reported revision by revision.",
    )
    lint.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="SQL files or directories; - or nothing reads standard input",
    )
    lint.add_argument(
        "--dialect",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="SQL dialect to read (default sqlite)",
    )
    lint.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    lint.add_argument(
        "--strict-migrations",
        action="store_true",
        help="make the migration advice (a lock held longer than needed: index-not-concurrent, "
        "lock-without-timeout, table-rewrite, ...) warnings, so that they fail the lint",
    )
    lint.set_defaults(handler=_cmd_lint)

    clean = commands.add_parser(
        "clean",
        help="drop scratch databases and files that a crashed sandbox left behind",
        description="Remove orphaned sandboxes: temporary SQLite directories whose process is "
        "gone, and, when a PostgreSQL URL is given or configured, scratch databases and "
        "schemas that carry dbsandbox's marker and have no live connection. Nothing else is "
        "touched. Exit codes: 0 done (also when nothing was found); 2 bad input, or the "
        "server could not be reached; 130 interrupted.",
    )
    clean.add_argument(
        "--url", help="PostgreSQL server URL or key=value pairs (default: as for run)"
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed")
    clean.set_defaults(handler=_cmd_clean)
    return parser


def _read_script(name: str) -> tuple[str, str]:
    if name == "-":
        # Decode the bytes ourselves: under a C/POSIX locale sys.stdin uses surrogateescape,
        # and undecodable input would reach the driver as lone surrogates (a traceback).
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # replaced by a text-only object (tests, embedding)
            return sys.stdin.read(), "<stdin>"
        try:
            return stream.read().decode("utf-8"), "<stdin>"
        except UnicodeDecodeError:
            raise UserError("cannot read standard input: not UTF-8 text") from None
    path = Path(name)
    require_readable(path, name)  # a named pipe would block the open() below
    try:
        # Bytes, decoded here: read_text's universal newlines would turn a CRLF inside a string
        # literal into LF, and the engine must get the script byte for byte (as from stdin).
        return path.read_bytes().decode("utf-8"), name
    except FileNotFoundError:
        raise UserError(f"cannot read {name}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"cannot read {name}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None


def _target_options(args: argparse.Namespace) -> TargetOptions:
    from sandbox.options import TargetOptions

    return TargetOptions(
        engine=args.engine,
        url=args.url,
        from_file=args.from_file,
        busy_timeout_ms=args.busy_timeout,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from sandbox.scenario.catalog import is_scenario_ref

    if is_scenario_ref(args.script):
        return _run_scenario(args)
    if args.solution:
        raise UserError("--solution goes with a scenario, not a SQL script")
    return _run_script(args)


def _run_scenario(args: argparse.Namespace) -> int:
    from sandbox.lifecycle import sandbox_closed_at_end
    from sandbox.runner import RunOptions
    from sandbox.scenario import report as scenario_report
    from sandbox.scenario.catalog import find
    from sandbox.scenario.player import ScenarioBroken, play
    from sandbox.scenario.trust import require_trust
    from sandbox.targets import open_target

    scenario = find(args.script)
    require_trust(scenario)
    if not scenario.supports(args.engine):
        why = f": {scenario.engine_note}" if scenario.engine_note else ""
        engines = ", ".join(scenario.engines)
        raise UserError(f"scenario {scenario.id} runs on {engines} only{why}")
    options = _target_options(args)
    _check_exports(args.export)  # a bad path fails before the run, not after it
    with sandbox_closed_at_end(open_target(options)) as target:
        _warn(target.warnings)
        try:
            result = play(
                scenario,
                target,
                solution=args.solution,
                options=RunOptions(args.page_size, args.statement_timeout, args.wait_timeout),
            )
        except ScenarioBroken as exc:
            print(f"dbsandbox: {escape_controls(str(exc))}", file=sys.stderr)
            return 1
    if args.format == "json":
        print(scenario_report.to_json(result))
    else:
        print(scenario_report.to_text(result))
    if args.export:
        from sandbox.export import SessionRecord

        _write_exports(SessionRecord.from_scenario_run(result), args.export)
    return EXIT_OK if result.passed else 1


def _warn(warnings: list[str]) -> None:
    """The sandbox's risks, once per run, on stderr: stdout stays the report."""
    for warning in warnings:
        print(f"warning: {escape_controls(warning)}", file=sys.stderr)


def _check_exports(paths: list[Path]) -> None:
    from sandbox.export import export_paths

    for path in paths:
        export_paths(path)


def _write_exports(record: SessionRecord, paths: list[Path]) -> None:
    """Write each --export; stdout stays the report, so the files are named on stderr."""
    from sandbox.export import write_export

    sys.stdout.flush()
    for path in paths:
        for written in write_export(record, path):
            print(escape_controls(f"wrote {written}"), file=sys.stderr)


def _open_app(
    options: object,
    scenario: object,
    pick: bool,
    statement_timeout_s: float = 30.0,
    progress_path: Path | None = None,
    traces: list[list[str]] | None = None,
    together: bool = False,
) -> int:
    # Only this command imports the UI: the headless commands never load textual.
    from sandbox.lifecycle import Shield
    from sandbox.ui.app import create_app

    app = create_app(
        options,  # type: ignore[arg-type]
        scenario,  # type: ignore[arg-type]
        pick,
        statement_timeout_s,
        progress_path=progress_path,
        traces=traces,
        together=together,
    )
    try:
        app.run()
    finally:
        # A closed terminal (SIGHUP) or kill unwinds past the app's own cleanup: the scratch
        # database must still go, and a second Ctrl+C must not cut its removal short.
        with Shield():
            app.bridge.close()
    # A crash inside the app (its traceback already printed) must not look like success.
    return app.return_code or EXIT_OK


def _cmd_app(args: argparse.Namespace) -> int:
    """Bare `dbsandbox [options]`: exactly `dbsandbox play [options]`, the picker in front."""
    play_args = build_parser().parse_args(["play"])
    for name in APP_OPTIONS:
        if hasattr(args, APP_PREFIX + name):
            setattr(play_args, name, getattr(args, APP_PREFIX + name))
    return _cmd_play(play_args)


def _cmd_play(args: argparse.Namespace) -> int:
    from sandbox.options import TargetOptions
    from sandbox.scenario.catalog import find
    from sandbox.scenario.trust import require_trust

    traces = _traced_programs(args)  # a missing program fails before any app or sandbox
    scenario = find(args.scenario) if args.scenario else None
    if scenario is not None and traces:
        raise UserError(
            "--trace opens free play: a scenario's Check would count a program's statements as "
            "your recovery"
        )
    if scenario is not None:
        require_trust(scenario)  # named on the command line: --trust is the way to say yes
    url = args.url
    if args.engine == "postgres":
        from sandbox.targets import resolve_postgres_url

        url = resolve_postgres_url(args.url, Path.cwd())
    elif args.url:
        raise UserError("--url is for --engine postgres; SQLite sandboxes need no server")
    if scenario is not None and not scenario.supports(args.engine):
        raise UserError(f"scenario {scenario.id} runs on {', '.join(scenario.engines)} only")
    options = TargetOptions(
        engine=args.engine, url=url, from_file=args.from_file, busy_timeout_ms=args.busy_timeout
    )
    # The progress file goes along only when named: otherwise the app's store finds its own
    # (DBSANDBOX_PROGRESS, else the state directory), as `dbsandbox progress` does.
    where: dict[str, Any] = {"progress_path": args.progress} if args.progress is not None else {}
    if traces:  # free play at once: the programs run as soon as the sandbox is open
        where.update(traces=traces, together=args.together)
    pick = scenario is None and not traces
    return _open_app(options, scenario, pick, args.statement_timeout, **where)


def _traced_programs(args: argparse.Namespace) -> list[list[str]]:
    """`play --trace` values as commands, each checked to exist."""
    from sandbox.trace.tracer import program_command

    traces = getattr(args, "trace", None) or []
    if getattr(args, "together", False) and len(traces) < 2:
        raise UserError("--together starts several --trace programs at once: give two or more")
    commands = []
    for text in traces:
        try:
            commands.append(program_command(text))
        except UserError as exc:
            raise UserError(f"--trace: {exc}") from None
    return commands


def _cmd_scenarios(args: argparse.Namespace) -> int:
    import json

    from sandbox.scenario.catalog import catalog, source_of
    from sandbox.scenario.trust import is_trusted

    found = catalog()
    # The pack a scenario comes from is where its file is: the catalog knows, not the file.
    packs = [source_of(s.path) if s.path is not None else None for s in found]
    if args.format == "json":
        listed = [
            {**s.listing(), "pack": pack, "trusted": is_trusted(s)}
            for s, pack in zip(found, packs, strict=True)
        ]
        print(json.dumps(listed, indent=2))
        return EXIT_OK
    for s, pack in zip(found, packs, strict=True):
        engines = "+".join(s.engines)
        print(escape_controls(f"{s.id:<22} {s.difficulty:<12} {engines:<16} {s.title}"))
        if s.tags:
            print(escape_controls(f"{'':<22} tags: {', '.join(s.tags)}"))
        if pack is not None:
            print(escape_controls(f"{'':<22} from {pack}"))
        if s.has_python:
            print(f"{'':<22} {_python_note(s)}")
    return EXIT_OK


def _python_note(scenario: Any) -> str:
    """What a listing says of a scenario with Python steps: code, and whether it may run."""
    from sandbox.scenario.trust import from_catalog, is_trusted

    if from_catalog(scenario):
        return "python: runs SQLAlchemy programs (from the catalog)"
    if is_trusted(scenario):
        return "python: runs SQLAlchemy programs (trusted with --trust)"
    return "python: runs SQLAlchemy programs: only with --trust"


def _cmd_progress(args: argparse.Namespace) -> int:
    from sandbox.progress import ProgressStore
    from sandbox.progress_report import Progress, to_json, to_text
    from sandbox.scenario.catalog import listings

    store = ProgressStore(args.progress)
    try:
        entries = store.entries()
    finally:
        _warn(store.take_warnings())  # a corrupt file moved aside: said also if reading failed
    progress = Progress.of(str(store.path), listings(), entries, args.engine)
    print(to_json(progress) if args.format == "json" else to_text(progress))
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    import json

    from sandbox.scenario.loader import load, validate

    files: list[Path] = []
    for name in args.paths:
        path = Path(name)
        files.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    found = {path: validate(path) for path in files}
    problems = [problem for path in files for problem in found[path]]
    # Which valid files are code: their Python steps run only from the catalog or trusted.
    valid = [load(path) for path in files if not found[path]]
    python = {s.path: _python_note(s) for s in valid if s.has_python and s.path is not None}
    if args.format == "json":
        document: dict[str, Any] = {
            "valid": not problems,
            "files": [_validated_json(path, found[path]) for path in files],
        }
        proofs: list[dict[str, Any]] = []
        code = EXIT_OK if not problems else 1
        if args.prove and not problems:
            code = _prove(files, args, proofs)
            document["proofs"] = proofs
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return code
    for problem in problems:
        print(escape_controls(str(problem)))
    if problems:
        return 1
    for path, note in python.items():
        print(escape_controls(f"{path}: carries Python code: {note.removeprefix('python: ')}"))
    print(f"{len(files)} scenario file{'s' if len(files) != 1 else ''} valid")
    if args.prove:
        return _prove(files, args)
    return EXIT_OK


def _validated_json(path: Path, problems: list[Any]) -> dict[str, Any]:
    from sandbox.scenario.loader import load
    from sandbox.scenario.trust import from_catalog, is_trusted

    entry: dict[str, Any] = {
        "path": str(path),
        "valid": not problems,
        "problems": [{"line": p.line, "key": p.key, "message": p.message} for p in problems],
    }
    if not problems:
        scenario = load(path)
        entry["id"] = scenario.id
        entry["python"] = scenario.has_python
        entry["from_catalog"] = from_catalog(scenario)
        entry["trusted"] = is_trusted(scenario)
    return entry


def _engines(args: argparse.Namespace, offered: Sequence[str]) -> tuple[dict[str, str], str]:
    """The engines to play on, each with its server URL ("" for SQLite), and why PostgreSQL
    is left out when it is ("" when it is not)."""
    from sandbox.targets import resolve_postgres_url

    wanted = list(offered) if args.engine == "all" else [args.engine]
    chosen: dict[str, str] = {}
    skipped = ""
    for engine in wanted:
        if engine == "sqlite":
            chosen[engine] = ""
            continue
        try:
            chosen[engine] = resolve_postgres_url(args.url, Path.cwd())
        except UserError:
            if args.engine == "postgres":
                raise
            skipped = "no server was named (give --url or set DBSANDBOX_POSTGRES_URL)"
    return chosen, skipped


def _opener(engine: str, url: str) -> Callable[[], Any]:
    from sandbox.lifecycle import sandbox_closed_at_end
    from sandbox.options import TargetOptions
    from sandbox.targets import open_target

    options = TargetOptions(engine=engine, url=url or None)
    return lambda: sandbox_closed_at_end(open_target(options))


def _prove(
    files: list[Path], args: argparse.Namespace, proofs: list[dict[str, Any]] | None = None
) -> int:
    """Prove each file on its engines; the lines are printed, or with `proofs` collected."""
    from sandbox.scenario.loader import load
    from sandbox.scenario.prove import prove
    from sandbox.scenario.trust import is_trusted, untrusted_reason

    def say(text: str) -> None:
        if proofs is None:
            print(escape_controls(text))

    unproven = 0
    for path in files:
        scenario = load(path)
        if not is_trusted(scenario):
            # Proving plays it: a file that is code runs only from the catalog or trusted.
            say(f"{scenario.id}: not proven: {untrusted_reason(scenario)}")
            if proofs is not None:
                proofs.append(
                    {"scenario": scenario.id, "engine": None, "proven": False,
                     "lines": [untrusted_reason(scenario)]}
                )  # fmt: skip
            unproven += 1
            continue
        engines, skipped = _engines(args, scenario.engines)
        if skipped and "postgres" in scenario.engines:
            say(f"{scenario.id} (postgres): not proven: {skipped}")
        for engine, url in engines.items():
            if not scenario.supports(engine):
                say(
                    f"{scenario.id} ({engine}): not proven: it runs on "
                    f"{', '.join(scenario.engines)} only"
                )
                continue
            proof = prove(scenario, engine, _opener(engine, url))
            verdict = "proven" if proof.proven else "NOT proven"
            say(f"{scenario.id} ({engine}): {verdict}")
            for line in proof.lines:
                say(line)
            if proofs is not None:
                proofs.append(
                    {"scenario": scenario.id, "engine": engine, "proven": proof.proven,
                     "lines": [line.strip() for line in proof.lines]}
                )  # fmt: skip
            unproven += not proof.proven
    return 1 if unproven else EXIT_OK


def _cmd_new(args: argparse.Namespace) -> int:
    from sandbox.scenario.skeleton import write_skeleton

    path = write_skeleton(args.id, args.dir)
    print(escape_controls(f"wrote {path}: edit it, then: dbsandbox validate --prove {path}"))
    return EXIT_OK


def _cmd_grade(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return _grade_batch(args)
    if args.csv is not None:
        raise UserError("--csv goes with --batch DIR")
    if not args.scenario or not args.submission:
        raise UserError("grade needs SCENARIO and SUBMISSION (or --batch DIR)")
    import json

    from sandbox.scenario.catalog import find
    from sandbox.scenario.handin import read_attempt, result_document
    from sandbox.scenario.trust import require_trust

    scenario = find(args.scenario)
    require_trust(scenario)
    submission = Path(args.submission)
    engines, skipped = _engines(args, scenario.engines)
    grades = []
    notes: dict[str, str] = {}
    if skipped and "postgres" in scenario.engines:
        notes["postgres"] = skipped
    for engine, url in engines.items():
        if not scenario.supports(engine):
            notes[engine] = f"the scenario runs on {', '.join(scenario.engines)} only"
            continue
        grades.append(_grade_one(scenario, read_attempt(submission, scenario, engine), engine, url))
    if not grades:
        raise UserError(f"nothing graded: {'; '.join(notes.values())}")
    document = result_document(grades, notes)
    if args.result is not None:
        _write_text(args.result, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if args.format == "json":
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for grade in grades:
            print(escape_controls(f"{scenario.id} ({grade.engine}): {submission}"))
            for line in _grade_lines(grade):
                print(escape_controls(line))
        for engine, why in notes.items():
            print(escape_controls(f"{scenario.id} ({engine}): not graded: {why}"))
    return EXIT_OK if document["recovered"] else 1


def _grade_one(scenario: Any, attempt: Any, engine: str, url: str) -> Any:
    from sandbox.scenario.grading import grade

    return grade(scenario, attempt, _opener(engine, url), engine=engine)


def _grade_lines(grade: Any) -> list[str]:
    lines = ["  " + line for line in grade.score.lines()]
    for dataset in [grade.shown, *grade.variants]:
        name = f"variant {dataset.variant!r}" if dataset.variant else "dataset shown"
        for check in dataset.checks:
            if not check.passed:
                lines.append(f"  XX on {name}: {check.check.name}")
        if dataset.problem:
            lines.append(f"  XX on {name}: {dataset.problem}")
    return lines


def _grade_batch(args: argparse.Namespace) -> int:
    from sandbox.scenario.catalog import find
    from sandbox.scenario.handin import (
        class_folder,
        csv_row,
        read_attempt,
        scenario_named_in,
        write_csv,
    )
    from sandbox.scenario.trust import require_trust

    if args.submission:
        raise UserError("with --batch DIR, give no SUBMISSION (the folder holds them)")
    if args.csv is None:
        raise UserError("--batch DIR needs --csv FILE for the results")
    fixed = find(args.scenario) if args.scenario else None
    rows = []
    failed = 0
    for submission in class_folder(args.batch):
        path = submission.path
        try:
            named = fixed.id if fixed is not None else scenario_named_in(path) or path.stem
            scenario = fixed if fixed is not None else find(named)
            require_trust(scenario)
            engines, _skipped = _engines(args, scenario.engines)
            graded = 0
            for engine, url in engines.items():
                if not scenario.supports(engine):
                    continue
                attempt = read_attempt(path, scenario, engine)
                grade = _grade_one(scenario, attempt, engine, url)
                rows.append(csv_row(submission.learner, path, grade))
                graded += 1
                print(
                    escape_controls(
                        f"{submission.learner}: {scenario.id} ({engine}) {grade.score.total}/100"
                    )
                )
            if not graded:
                raise UserError(f"{scenario.id} runs on none of the engines asked for")
        except UserError as exc:
            failed += 1
            rows.append(csv_row(submission.learner, path, None, str(exc)))
            print(escape_controls(f"{submission.learner}: not graded: {exc}"), file=sys.stderr)
    write_csv(args.csv, rows)
    print(escape_controls(f"wrote {args.csv}: {len(rows)} row{'s' if len(rows) != 1 else ''}"))
    return 1 if failed else EXIT_OK


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def _run_script(args: argparse.Namespace) -> int:
    from sandbox import report
    from sandbox.guard.policy import Guard
    from sandbox.lifecycle import sandbox_closed_at_end
    from sandbox.runner import RunOptions, read_script, run_steps
    from sandbox.statements import Dialect
    from sandbox.targets import open_target

    text, source = _read_script(args.script)
    dialect: Dialect = "postgres" if args.engine == "postgres" else "sqlite"
    script = read_script(text, dialect, source)  # bad directions fail before any database exists
    guard = Guard(yes=args.yes, acknowledged=script.acknowledged)
    options = _target_options(args)
    _check_exports(args.export)  # a bad path fails before the run, not after it
    with sandbox_closed_at_end(open_target(options)) as target:
        _warn(target.warnings)
        result = run_steps(
            script.steps,
            target,
            RunOptions(args.page_size, args.statement_timeout, args.wait_timeout),
            guard,
        )
    rendered = report.to_json(result) if args.format == "json" else report.to_text(result)
    print(rendered)
    if args.export:
        # Also when the guard stopped the script: the export shows where and why.
        from sandbox.export import SessionRecord

        _write_exports(SessionRecord.from_run(result), args.export)
    return EXIT_STOPPED if result.stopped is not None else EXIT_OK


def _cmd_trace(args: argparse.Namespace) -> int:
    from sandbox import report
    from sandbox.lifecycle import sandbox_closed_at_end
    from sandbox.targets import open_target
    from sandbox.trace.tracer import split_commands, trace

    words = list(args.programs)
    if words and words[0] == "--":
        words = words[1:]
    commands = split_commands(words)  # a missing program fails before any database exists
    _check_exports(args.export)
    with sandbox_closed_at_end(open_target(_target_options(args))) as target:
        _warn(target.warnings)
        result = trace(
            commands,
            target,
            guard=args.guard,
            together=args.together,
            timeout_s=args.timeout,
        )
    programs = [
        {"label": p.label, "argv": p.argv[1:], "exit_code": p.exit_code} for p in result.programs
    ]
    if args.format == "json":
        print(report.to_json(result.run, programs=programs))
    else:
        text = report.to_text(result.run)
        ran = [
            f"program {p.label}: {' '.join(p.argv[1:]) or p.argv[0]} exited with code {p.exit_code}"
            for p in result.programs
        ]
        for line in ran:
            print(escape_controls(line))
        print(text)
    if args.export:
        from sandbox.export import SessionRecord

        _write_exports(SessionRecord.from_run(result.run), args.export)
    if result.run.stopped is not None:
        return EXIT_STOPPED
    return 1 if result.failed else EXIT_OK


def _sql_files(paths: list[str]) -> list[str]:
    """The files to lint: each path as given, directories expanded to their *.sql files."""
    found: list[str] = []
    for name in paths or ["-"]:
        path = Path(name)
        if name != "-" and path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*.sql")) if p.is_file())
        else:
            found.append(name)
    return found


def _cmd_lint(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from sandbox.guard import lint_script
    from sandbox.guard.findings import MIGRATION_RULES, Severity
    from sandbox.revisions import revision_at, revisions

    sources = [(name, *_read_script(name)) for name in _sql_files(args.paths)]
    blocking = False
    documents: list[dict[str, Any]] = []
    for _, text, shown in sources:
        found = lint_script(text, args.dialect)
        if args.strict_migrations:
            found = [
                dataclasses.replace(f, severity=Severity.WARNING)
                if f.rule in MIGRATION_RULES
                else f
                for f in found
            ]
        blocking = blocking or any(f.blocking for f in found)
        # Alembic's offline SQL (alembic upgrade head --sql): findings by revision.
        marked = revisions(text)
        if args.format == "json":
            for f in found:
                document = f.to_json(shown)
                if marked:
                    at = revision_at(marked, f.line)
                    document["revision"] = at.to_json() if at is not None else None
                documents.append(document)
            continue
        if not marked:
            for f in found:
                print(_lint_line(shown, f))
            continue
        before = [f for f in found if revision_at(marked, f.line) is None]
        if before:
            print(escape_controls(f"{shown}: before the first revision (Alembic's own setup)"))
            for f in before:
                print(_lint_line(shown, f))
        for revision in marked:
            mine = [f for f in found if revision_at(marked, f.line) is revision]
            counted = ", ".join(
                f"{n} {severity}{'s' if n > 1 else ''}"
                for severity in ("error", "warning", "info")
                if (n := sum(1 for f in mine if f.severity == severity))
            )
            print(
                escape_controls(
                    f"{shown}:{revision.line}: revision {revision.name}: {counted or 'no findings'}"
                )
            )
            for f in mine:
                print(_lint_line(shown, f))
    if args.format == "json":
        print(json.dumps(documents, indent=2))
    return 1 if blocking else EXIT_OK


def _lint_line(path: str, f: Finding) -> str:
    return escape_controls(f"{path}:{f.line}:{f.column}: {f.severity} {f.rule} {f.message}")


def _cmd_clean(args: argparse.Namespace) -> int:
    from sandbox.cleanup import CleanReport, clean_postgres, clean_sqlite
    from sandbox.targets import is_postgres_url, resolve_postgres_url, url_scheme

    try:
        url = resolve_postgres_url(args.url, Path.cwd())
    except UserError:
        url = None  # no server configured: only local SQLite sandboxes to look at
    scheme = url_scheme(url) if url is not None else None
    if url is not None and args.url is None and scheme is not None and not is_postgres_url(url):
        # DATABASE_URL often names the project's own (e.g. SQLite or MySQL) database: not a
        # server of ours, and no reason to refuse cleaning the local sandboxes. Only the
        # scheme is named: the rest may hold a password.
        print(f"skipped postgres: the configured URL is a {scheme} URL, not a PostgreSQL one")
        url = None
    reports: list[tuple[str, CleanReport]] = []
    # The server first: a bad URL must stop the command before anything is removed, or the
    # SQLite directories already deleted would never be reported.
    if url is not None:
        reports.append(("postgres", clean_postgres(url, args.dry_run)))
    reports.insert(0, ("sqlite", clean_sqlite(args.dry_run)))
    total = CleanReport()
    for _, found in reports:
        total.removed += found.removed
        total.kept += found.kept
    verb = "would remove" if args.dry_run else "removed"
    for item in total.removed:
        print(escape_controls(f"{verb} {item}"))
    for item in total.kept:
        print(escape_controls(f"kept {item}"))
    if not total.removed:
        where = " and ".join(name for name, _ in reports)
        print(f"no orphaned sandboxes found ({where})")
    return EXIT_OK


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _quiet_libraries() -> None:
    """Libraries' own log records stay off the user's terminal. With no handler configured,
    Python prints a WARNING or worse to stderr, traceback and all: SQLAlchemy's pool logs
    the connection it could not close when a second Ctrl+C lands inside that close, and the
    user saw a traceback above dbsandbox's own one-line account of the interruption."""
    logger = logging.getLogger("sqlalchemy")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.handler = _cmd_app
    else:
        misplaced = [flag for name, flag in APP_OPTIONS.items() if hasattr(args, APP_PREFIX + name)]
        if misplaced:
            parser.error(
                f"{', '.join(misplaced)} before a command is for the app only; put it after "
                f"the command: dbsandbox {args.command} {misplaced[0]} ..."
            )
    _quiet_libraries()
    # A terminal closing or `kill` must clean up like Ctrl+C: scratch databases are dropped
    # in the `finally` blocks that KeyboardInterrupt unwinds through. The previous handlers
    # come back afterwards, so calling main() in-process (tests, embedding) leaves no trace.
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _raise_interrupt)
    from sandbox.lifecycle import existing

    before = existing()
    interrupted = False
    code = EXIT_OK
    try:
        folders = getattr(args, "scenarios", None) or getattr(args, APP_PREFIX + "scenarios", None)
        if folders or "sandbox.scenario.catalog" in sys.modules:
            from sandbox.scenario.catalog import use_folders

            use_folders(folders)  # reset too: main() may be called again in one process
        trusted = bool(getattr(args, "trust", False) or getattr(args, APP_PREFIX + "trust", False))
        if trusted or "sandbox.scenario.trust" in sys.modules:
            from sandbox.scenario.trust import trust_all

            trust_all(trusted)  # reset too, as the folders are
        code = args.handler(args)
    except UserError as exc:
        print(f"dbsandbox: {escape_controls(str(exc))}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        interrupted, code = True, EXIT_INTERRUPTED
    except BrokenPipeError:
        # `dbsandbox run ... | head` closing early is not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as exc:
        if not _lost_connection(exc):
            raise
        # A server that went away at a moment no outcome covers (between statements, while
        # a session opened): one line, and the sandbox is still removed below.
        print(
            f"dbsandbox: lost the connection to the server: {escape_controls(first_line(exc))}",
            file=sys.stderr,
        )
        code = EXIT_USAGE
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: the handler was not set from Python
                signal.signal(sig, handler)
    return last_word(code, interrupted, before)


def _lost_connection(exc: BaseException) -> bool:
    """A driver error saying the connection is gone (psycopg2 is imported only if used)."""
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is None:
        return False
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))


def last_word(code: int, interrupted: bool, before: set[int]) -> int:
    """Remove whatever a sandbox of this process still holds, then say truthfully whether
    anything was left behind."""
    from sandbox.lifecycle import close_everything_left

    try:
        left = close_everything_left(before)
    except KeyboardInterrupt:
        left, interrupted = ["the sandbox (interrupted while removing it)"], True
    if interrupted:
        if left:
            print(
                f"dbsandbox: interrupted; left behind: {'; '.join(left)}. "
                "Run `dbsandbox clean` to remove it",
                file=sys.stderr,
            )
        else:
            print("dbsandbox: interrupted; the sandbox was removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    if left:
        print(
            f"dbsandbox: could not remove the sandbox: {'; '.join(left)}. "
            "Run `dbsandbox clean` once the server answers",
            file=sys.stderr,
        )
        return code or EXIT_LEFT_BEHIND
    return code
