"""Read and validate scenario files (TOML, read with tomllib).

Every mistake becomes a Problem naming the file, the line where it can be found, and the key,
so that `dbsandbox validate` can tell an author exactly what to fix. tomllib gives lines only
for syntax errors; for the rest the line is found by looking for the key in the file's text.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import UserError
from sandbox.metacommands import SESSION_NAME
from sandbox.scenario.model import (
    ANOMALIES,
    DIFFICULTIES,
    ENGINES,
    POSTGRES_LEVELS,
    PROCESS_KINDS,
    RECOVERY_METHODS,
    STATUSES,
    TX_STATES,
    Check,
    CounterStep,
    Expectation,
    PerEngine,
    Process,
    Scenario,
    SessionSpec,
    Step,
    Traffic,
    Variant,
)
from sandbox.statements import Dialect, split_statements, words
from sandbox.userfiles import unreadable

ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
TOP_KEYS = {
    "id", "title", "summary", "difficulty", "tags", "engines", "engine_note", "story", "task",
    "setup", "sessions", "breakage", "checks", "hints", "solution", "anomaly", "minutes", "vars",
    "variants", "traffic",
}  # fmt: skip
TRAFFIC_KEYS = {"session", "sql", "every_ms", "for_ms", "before_step", "wait_before_step"}
STEP_KEYS = {
    "session", "sql", "expect", "error", "rows", "rowcount", "waits", "findings", "tag",
    "tx_after", "engines", "background", "python", "program", "exit", "output",
}  # fmt: skip
# A Python step's keys (`python` instead of `sql`); the rest of STEP_KEYS are a SQL step's.
PYTHON_STEP_KEYS = {"python", "program", "exit", "output", "engines"}
SQL_ONLY_KEYS = STEP_KEYS - PYTHON_STEP_KEYS - {"sql"}
# A program's file name: its stem names its lanes (checkout.py -> checkout-1), so it is kept
# to what the tracer keeps of a stem (letters, digits, _; at most 24).
PROGRAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,23}\.py$")
CHECK_KEYS = {"name", "sql", "expect", "session", "recovery"}
# A process check's keys: which ones each kind needs is in _PROCESS_NEEDS.
PROCESS_KEYS = {"name", "process", "session", "table", "column", "version", "tables", "pattern",
                "counter", "level", "reads", "with_writes", "before", "after",
                "times"}  # fmt: skip
_PROCESS_NEEDS = {
    "no-blind-write": ("table", "column"),
    "forbid": ("pattern",),
    "require": ("pattern",),
    "apart": ("pattern", "after"),
}
VARIANT_KEYS = {"name", "vars", "setup"}
# `{{name}}` in a scenario's strings stands for a value of its [vars] (or of a variant's).
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# The catalog's files are a few KiB; a file far larger is a mistake, not a scenario, and tomllib
# would take seconds and hundreds of MiB to say so.
MAX_FILE_BYTES = 1_048_576
# Statements sqlglot cannot parse but that are plain SQL of the engines (transaction control,
# settings): a parse failure on these is sqlglot's gap, not the author's mistake.
_UNPARSED_OK = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "SET",
     "RESET", "SHOW", "PRAGMA", "LOCK", "EXPLAIN", "VACUUM", "ANALYZE", "DO"}
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ScenarioInvalid(UserError):
    """A scenario file with problems; str() lists them, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Locator:
    """Find the line of a key in the TOML text: `breakage[2].session` -> line number.

    The table headers are indexed once, so a file with thousands of problems (or steps) is
    located in time proportional to its size, not to its size times its problems.
    """

    _TABLE_HEADER = re.compile(r"^\s*\[\[?[^.\]]+\]\]?\s*$")
    _ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\]]*?)\s*\]\]")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        # Lines of top-level table headers ([name] and [[name]]), in order.
        self._tables = [i for i, line in enumerate(self.lines) if self._TABLE_HEADER.match(line)]
        # For each array-of-tables name, the lines of its [[name]] headers, in order.
        self._arrays: dict[str, list[int]] = {}
        for i, line in enumerate(self.lines):
            header = self._ARRAY_HEADER.match(line)
            if header:
                self._arrays.setdefault(header.group(1), []).append(i)

    def line(self, path: str) -> int | None:
        parts = re.findall(r"([A-Za-z_][\w-]*)(?:\[(\d+)\])?", path)
        start, end = 0, len(self.lines)
        for depth, (name, index) in enumerate(parts):
            if index:
                headers = self._arrays.get(name, [])
                at = bisect.bisect_left(headers, start) + int(index)
                if at >= bisect.bisect_left(headers, end):
                    return None
                start = headers[at]
                later = bisect.bisect_right(self._tables, start)
                end = min(end, self._tables[later]) if later < len(self._tables) else end
                if depth == len(parts) - 1:
                    return start + 1
                continue
            key = re.compile(rf"^\s*(\[+\s*)?([\w.-]*\.)?{re.escape(name)}\s*(=|\]|\.)")
            for i in range(start, end):
                if key.match(self.lines[i]):
                    if depth == len(parts) - 1:
                        return i + 1
                    start = i
                    break
            else:
                return None
        return None


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.shown = str(path)
        self.locate = _Locator(text)
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, str]] = set()

    def problem(self, key: str, message: str) -> None:
        if (key, message) in self._seen:  # checked once per engine, reported once
            return
        self._seen.add((key, message))
        self.problems.append(Problem(self.shown, self.locate.line(key), key, message))

    def unknown_keys(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(table) - allowed):
            known = ", ".join(sorted(allowed))
            self.problem(f"{where}.{key}" if where else key, f"unknown key (known: {known})")

    def text(self, table: dict[str, Any], key: str, where: str, required: bool = True) -> str:
        value = table.get(key)
        full = f"{where}.{key}" if where else key
        if value is None:
            if required:
                self.problem(full, "missing (a string is required)")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(full, f"must be a non-empty string, not {_kind(value)}")
            return ""
        return value.strip()

    def strings(self, table: dict[str, Any], key: str, where: str, required: bool) -> list[str]:
        value = table.get(key)
        full = f"{where}.{key}" if where else key
        if value is None:
            if required:
                self.problem(full, "missing (a list of strings is required)")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.problem(full, "must be a list of non-empty strings")
            return []
        return [v.strip() for v in value]

    def tables(self, data: dict[str, Any], key: str, required: bool) -> list[dict[str, Any]]:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(key, f"missing: add at least one [[{key}]] table")
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(key, f"must be an array of tables, written [[{key}]]")
            return []
        if required and not value:
            self.problem(key, f"empty: add at least one [[{key}]] table")
        return value


def _kind(value: Any) -> str:
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def load(path: Path, variant: str | None = None) -> Scenario:
    """Read and validate one scenario file; raises ScenarioInvalid listing every problem.

    With `variant`, the scenario is built on that hidden dataset: its values for [vars], and
    its SQL added to the setup.
    """
    scenario, problems = _read(path, variant)
    if problems or scenario is None:
        raise ScenarioInvalid(problems)
    return scenario


def on_variant(scenario: Scenario, name: str) -> Scenario:
    """The same scenario built on one of its variants (read again from its file)."""
    if scenario.path is None:
        raise UserError(f"{scenario.id}: has no file to build variant {name!r} from")
    return load(scenario.path, name)


def validate(path: Path) -> list[Problem]:
    """Every problem in a scenario file, on its own dataset and on each variant's."""
    scenario, problems = _read(path)
    if scenario is not None:
        for variant in scenario.variants:
            for problem in _read(path, variant.name)[1]:
                message = f"on variant {variant.name!r}: {problem.message}"
                problems.append(Problem(problem.path, problem.line, problem.key, message))
    return problems


def _read(path: Path, variant: str | None = None) -> tuple[Scenario | None, list[Problem]]:
    shown = str(path)
    text, why = _text_of(path)
    if text is None:
        return None, [Problem(shown, None, "", why)]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11 keeps the position only in the message: "... (at line 8, column 16)".
        at = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(at.group(1)) if at else None
        message = str(exc).split(" (at line")[0]
        return None, [Problem(shown, line, "", f"not valid TOML: {message}")]
    except RecursionError:  # tomllib reads nested arrays and inline tables recursively
        why = "cannot be read: arrays or tables nested too deeply"
        return None, [Problem(shown, None, "", why)]
    except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
        first = (str(exc).splitlines() or ["a value it cannot read"])[0]
        return None, [Problem(shown, None, "", f"cannot be read: {first[:200]}")]
    reader = _Reader(path, text)
    try:
        scenario = _build(reader, data, variant)
    except RecursionError:  # values nested deeper than the checks walk
        reader.problem("", "values are nested too deeply")
        scenario = None
    return (scenario if not reader.problems else None), reader.problems


def _text_of(path: Path) -> tuple[str | None, str]:
    """The file's text, or None and why it cannot be read (checked before anything opens it)."""
    why = unreadable(path)
    if why is not None:
        return None, why
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, (
                f"too large for a scenario file ({size / 1_048_576:.1f} MiB; at most "
                f"{MAX_FILE_BYTES // 1_048_576} MiB)"
            )
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    try:
        # An editor's byte order mark is no part of the TOML.
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,})"


def _build(r: _Reader, data: dict[str, Any], variant: str | None = None) -> Scenario | None:
    r.unknown_keys(data, TOP_KEYS, "")
    values = _vars(r, data)
    variants = _variants(r, data, values)
    if variant is not None:
        chosen = next((v for v in variants if v.name == variant), None)
        if chosen is None:
            known = ", ".join(repr(v.name) for v in variants) or "none"
            r.problem("variants", f"no variant {variant!r} (variants: {known})")
            return None
        values = {**values, **chosen.values}
        if chosen.setup:
            data = _with_setup(data, chosen.setup)
    data = _substitute(r, data, values)
    ident = r.text(data, "id", "")
    if ident and not ID.match(ident):
        r.problem("id", "must be lower-case letters, digits and dashes, e.g. missing-where")
    elif ident and ident != r.path.stem:
        r.problem("id", f"must match the file name ({r.path.stem}.toml)")
    title = r.text(data, "title", "")
    summary = r.text(data, "summary", "")
    difficulty = r.text(data, "difficulty", "")
    if difficulty and difficulty not in DIFFICULTIES:
        r.problem("difficulty", f"must be one of {', '.join(DIFFICULTIES)}, not {difficulty!r}")
    tags = r.strings(data, "tags", "", required=False)
    named = r.strings(data, "engines", "", required=True)
    for engine in named:
        if engine not in ENGINES:
            r.problem("engines", f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    engines = [e for e in named if e in ENGINES]
    if not named and "engines" in data:
        r.problem("engines", "name at least one engine")
    # A scenario that runs on one engine must say why (judged on what the author wrote).
    engine_note = r.text(data, "engine_note", "", required=len(named) == 1)
    anomaly = r.text(data, "anomaly", "", required="concurrency" in tags)
    if anomaly and anomaly not in ANOMALIES:
        r.problem("anomaly", f"must be one of {', '.join(ANOMALIES)}, not {anomaly!r}")
    minutes = data.get("minutes")
    if minutes is not None and (
        not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 240
    ):
        r.problem("minutes", "must be a whole number of minutes from 1 to 240")
        minutes = None
    story = r.text(data, "story", "")
    task = r.text(data, "task", "")
    hints = r.strings(data, "hints", "", required=True)
    if "hints" in data and not hints and not r.problems:
        r.problem("hints", "give at least one hint")

    sessions = _sessions(r, data, engines)
    names = {s.name for s in sessions}
    setup = _setup(r, data, engines)
    programs: set[str] = set()
    breakage = _steps(r, data, "breakage", names, engines, required=True, programs=programs)
    solution = _steps(r, data, "solution", names, engines, required=True, programs=programs)
    checks = _checks(r, data, names, engines)
    traffic = _traffic(r, data, names, engines, breakage, solution, checks)
    if r.problems:
        return None
    return Scenario(
        id=ident,
        title=title,
        summary=summary,
        difficulty=difficulty,
        tags=tuple(tags),
        engines=tuple(engines),
        story=story,
        task=task,
        setup=setup,
        sessions=tuple(sessions),
        breakage=tuple(breakage),
        checks=tuple(checks),
        hints=tuple(hints),
        solution=tuple(solution),
        path=r.path,
        engine_note=engine_note or None,
        anomaly=anomaly or None,
        minutes=minutes,
        variants=tuple(variants),
        dataset=variant,
        traffic=tuple(traffic),
    )


def _vars(r: _Reader, data: dict[str, Any]) -> dict[str, Any]:
    """The scenario's [vars]: names and the values the learner's dataset gives them."""
    table = data.get("vars", {})
    if not isinstance(table, dict):
        r.problem("vars", "must be a table of names and values: [vars] opening = 100")
        return {}
    values: dict[str, Any] = {}
    for name, value in table.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            r.problem(f"vars.{name}", "a name is letters, digits and _ (e.g. opening_balance)")
        elif not isinstance(value, str | int | float | bool):
            r.problem(f"vars.{name}", f"must be a string, number or boolean, not {_kind(value)}")
        else:
            values[name] = value
    return values


def _variants(r: _Reader, data: dict[str, Any], values: dict[str, Any]) -> list[Variant]:
    found: list[Variant] = []
    for i, table in enumerate(r.tables(data, "variants", required=False)):
        where = f"variants[{i}]"
        r.unknown_keys(table, VARIANT_KEYS, where)
        name = r.text(table, "name", where)
        if name and name in {v.name for v in found}:
            r.problem(f"{where}.name", f"variant {name!r} is declared twice")
        changed = table.get("vars", {})
        if not isinstance(changed, dict):
            r.problem(f"{where}.vars", "must be a table: vars = { opening = 250 }")
            changed = {}
        for key, value in changed.items():
            if key not in values:
                declared = ", ".join(sorted(values)) or "none"
                r.problem(
                    f"{where}.vars", f"{key!r} is not declared in [vars] (declared: {declared})"
                )
            elif type(value) is not type(values[key]):
                r.problem(
                    f"{where}.vars", f"{key} must be {_kind(values[key])}, like its [vars] value"
                )
        setup = r.text(table, "setup", where, required=False) or None
        if not changed and not setup:
            r.problem(where, "changes nothing: give it vars, setup, or both")
        found.append(Variant(name, dict(changed), setup))
    return found


def _with_setup(data: dict[str, Any], extra: str) -> dict[str, Any]:
    """The file's data with a variant's SQL after the setup (each engine's, when given)."""
    setup = data.get("setup")
    if not isinstance(setup, dict):
        return data
    grown = dict(setup)
    for key in ("sql", *ENGINES):
        if isinstance(grown.get(key), str):
            grown[key] = grown[key].rstrip().rstrip(";") + ";\n" + extra
    return {**data, "setup": grown}


def _substitute(r: _Reader, data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Every `{{name}}` replaced by its value, except in [vars] and [[variants]] themselves.

    A string that is nothing but one placeholder takes the value's own type, so that
    `expect = [["{{final}}"]]` compares as the number it stands for.
    """
    unknown: set[str] = set()

    def one(value: Any) -> Any:
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole and whole.group(1) in values:
                return values[whole.group(1)]

            def text(match: re.Match[str]) -> str:
                if match.group(1) not in values:
                    unknown.add(match.group(1))
                    return match.group(0)
                return str(values[match.group(1)])

            return PLACEHOLDER.sub(text, value)
        if isinstance(value, list):
            return [one(v) for v in value]
        if isinstance(value, dict):
            return {k: one(v) for k, v in value.items()}
        return value

    done = {k: (v if k in ("vars", "variants") else one(v)) for k, v in data.items()}
    for name in sorted(unknown):
        declared = ", ".join(sorted(values)) or "none"
        r.problem("vars", f"{{{{{name}}}}} is used but not declared (declared: {declared})")
    return done


def _sessions(r: _Reader, data: dict[str, Any], engines: list[str]) -> list[SessionSpec]:
    tables = r.tables(data, "sessions", required=False)
    if not tables:
        return [SessionSpec("A")]
    found: list[SessionSpec] = []
    for i, table in enumerate(tables):
        where = f"sessions[{i}]"
        r.unknown_keys(table, {"name", "isolation"}, where)
        name = r.text(table, "name", where)
        if name and not SESSION_NAME.match(name):
            r.problem(f"{where}.name", "letters, digits, _ or - only (e.g. A, B, alice)")
        if name in {s.name for s in found}:
            r.problem(f"{where}.name", f"session {name} is declared twice")
        isolation = r.text(table, "isolation", where, required=False).lower() or None
        if isolation and isolation not in POSTGRES_LEVELS:
            r.problem(f"{where}.isolation", f"must be one of {', '.join(POSTGRES_LEVELS)}")
        if isolation and "sqlite" in engines:
            r.problem(
                f"{where}.isolation",
                "SQLite has no isolation levels (it is always serializable); use BEGIN "
                "IMMEDIATE in a step, or make the scenario PostgreSQL-only",
            )
        found.append(SessionSpec(name, isolation))
    return found


def _setup(r: _Reader, data: dict[str, Any], engines: list[str]) -> PerEngine:
    table = data.get("setup")
    if not isinstance(table, dict):
        r.problem("setup", 'missing: add a [setup] table with sql = """..."""')
        return PerEngine()
    r.unknown_keys(table, {"sql", "dialect", *ENGINES}, "setup")
    source = table.get("dialect", "postgres")
    if source not in ENGINES:
        r.problem("setup.dialect", f"must be one of {', '.join(ENGINES)}")
        return PerEngine()
    overrides: dict[str, str] = {}
    for engine in engines:
        if engine in table:
            text = r.text(table, engine, "setup")
        else:
            written = r.text(table, "sql", "setup")
            text = _transpile(r, written, source, engine) if written else ""
        if text:
            _check_sql(r, text, engine, "setup", several=True)
        overrides[engine] = text
    return PerEngine(None, overrides)


def _transpile(r: _Reader, sql: str, source: str, engine: str) -> str:
    if source == engine:
        return sql
    import sqlglot  # only scenarios whose setup needs transpiling pay for the import

    out: list[str] = []
    for statement in split_statements(sql, "postgres" if source == "postgres" else "sqlite"):
        try:
            out.extend(sqlglot.transpile(statement.text, read=source, write=engine))
        except Exception as exc:  # any sqlglot error means: write this one per engine
            first = str(exc).splitlines()[0]
            r.problem(
                "setup.sql", f"cannot be transpiled to {engine} ({first}); add setup.{engine}"
            )
            return ""
    return ";\n".join(out) + ";"


def _check_meta(r: _Reader, text: str, key: str) -> str:
    """A step may be a snapshot command (\\snapshot, \\restore, \\diff, \\snapshots) or
    `\\explain STATEMENT`; returns the statement an `\\explain` carries, else ""."""
    from sandbox.errors import UserError
    from sandbox.metacommands import SNAPSHOT_COMMANDS, check
    from sandbox.statements import STATEMENT_COMMANDS, MetaCommand, split

    items = split(text)
    command = items[0] if len(items) == 1 else None
    allowed = SNAPSHOT_COMMANDS | STATEMENT_COMMANDS
    if not isinstance(command, MetaCommand) or command.name not in allowed:
        r.problem(
            key,
            "a backslash step must be one of \\snapshot, \\restore, \\diff, \\snapshots, \\explain",
        )
        return ""
    try:
        check(command, "", "A")
    except UserError as exc:
        r.problem(key, str(exc).split(": ", 1)[1])
    return command.sql


def _check_sql(r: _Reader, sql: str, engine: str, key: str, several: bool = False) -> None:
    import sqlglot

    from sandbox.guard.policy import outside_the_sandbox

    if not several and sql.lstrip().startswith("\\"):
        carried = _check_meta(r, sql.strip(), key)
        if carried:
            _check_sql(r, carried, engine, key)
        return
    dialect: Dialect = "postgres" if engine == "postgres" else "sqlite"
    statements = split_statements(sql, dialect)
    if not statements:
        r.problem(key, "has no SQL statement")
        return
    if not several and len(statements) > 1:
        r.problem(key, f"holds {len(statements)} statements; a step is one statement")
        return
    for statement in statements:
        snippet = " ".join(statement.text.split())[:60]
        for finding in outside_the_sandbox(statement, dialect):
            r.problem(
                key,
                f"reaches outside the sandbox, so no sandbox runs it: {snippet!r}: "
                f"{finding.message}",
            )
        first = (words(statement.text, dialect) or [""])[0]
        if first in _UNPARSED_OK:
            continue
        try:
            sqlglot.parse_one(statement.text, read=engine)
        except Exception as exc:  # sqlglot's parse errors have many types
            first_line = str(exc).splitlines()[0]
            r.problem(key, f"does not parse as {engine} SQL: {snippet!r}: {first_line}")


def _engine_tables(r: _Reader, table: dict[str, Any], where: str, allowed: set[str]) -> None:
    """`[breakage.sqlite]`-style overrides: each a table of the keys an engine may override."""
    for engine in ENGINES:
        if engine not in table:
            continue
        if not isinstance(table[engine], dict):
            r.problem(f"{where}.{engine}", "must be a table of per-engine overrides")
            continue
        r.unknown_keys(table[engine], allowed, f"{where}.{engine}")


def _per_engine(
    r: _Reader, table: dict[str, Any], key: str, where: str, engines: list[str]
) -> PerEngine:
    overrides = {
        e: table[e][key] for e in engines if isinstance(table.get(e), dict) and key in table[e]
    }
    return PerEngine(table.get(key), overrides)


def _steps(
    r: _Reader,
    data: dict[str, Any],
    key: str,
    sessions: set[str],
    engines: list[str],
    required: bool,
    programs: set[str] | None = None,
) -> list[Step]:
    steps: list[Step] = []
    programs = programs if programs is not None else set()
    for i, table in enumerate(r.tables(data, key, required)):
        where = f"{key}[{i}]"
        r.unknown_keys(table, STEP_KEYS | set(ENGINES), where)
        overridable = STEP_KEYS - {"session", "engines", "background", "program"}
        _engine_tables(r, table, where, overridable)
        only = table.get("engines")
        if only is not None and (
            not isinstance(only, list) or not only or any(e not in engines for e in only)
        ):
            r.problem(
                f"{where}.engines",
                f"must list some of the scenario's engines ({', '.join(engines)})",
            )
            only = None
        runs_on = [e for e in engines if only is None or e in only]
        python = _is_python_step(table)
        if python:
            step = _python_step(r, table, where, runs_on, sessions, programs)
            if step is not None:
                steps.append(
                    Step(
                        step.session,
                        step.sql,
                        step.expect,
                        r.locate.line(where),
                        tuple(only) if only else None,
                        python=step.python,
                        program=step.program,
                    )
                )
            continue
        session = table.get("session", "A")
        if not isinstance(session, str) or session not in sessions:
            declared = ", ".join(sorted(sessions))
            r.problem(f"{where}.session", f"unknown session {session!r} (declared: {declared})")
        for extra in ("program", "exit", "output"):
            if extra in table:
                r.problem(f"{where}.{extra}", "only a Python step (python = ...) takes it")
        sql = _per_engine(r, table, "sql", where, engines)
        for engine in runs_on:
            text = sql.on(engine)
            if not isinstance(text, str) or not text.strip():
                r.problem(f"{where}.sql", f"missing for {engine} (a string is required)")
                continue
            _check_sql(r, text, engine, f"{where}.sql")
        expect = _expectation(r, table, where, runs_on)
        background = table.get("background", False)
        if not isinstance(background, bool):
            r.problem(f"{where}.background", "must be true or false")
            background = False
        steps.append(
            Step(
                str(session),
                sql,
                expect,
                r.locate.line(where),
                tuple(only) if only else None,
                background,
            )
        )
    return steps


def _traffic(
    r: _Reader,
    data: dict[str, Any],
    sessions: set[str],
    engines: list[str],
    breakage: list[Step],
    solution: list[Step],
    checks: list[Check],
) -> list[Traffic]:
    """`[[traffic]]`: a declared session of its own that repeats one statement in the
    breakage (sandbox.traffic)."""
    from sandbox.traffic import MAX_FOR_MS, MIN_EVERY_MS, check_sql

    found: list[Traffic] = []
    # A step's or check's session may be any TOML value here (its problem is reported already).
    used = {
        name
        for name in [*(s.session for s in (*breakage, *solution)), *(c.session for c in checks)]
        if isinstance(name, str)
    }
    for i, table in enumerate(r.tables(data, "traffic", required=False)):
        where = f"traffic[{i}]"
        r.unknown_keys(table, TRAFFIC_KEYS | set(ENGINES), where)
        _engine_tables(r, table, where, {"sql"})
        session = table.get("session")
        declared = ", ".join(sorted(sessions))
        if not isinstance(session, str) or session not in sessions:
            r.problem(
                f"{where}.session",
                f"unknown session {session!r}: declare it under [[sessions]] (declared: "
                f"{declared})",
            )
            session = ""
        elif session in used:
            r.problem(
                f"{where}.session",
                f"session {session} is a step's or a check's: traffic needs a session of its own",
            )
        elif session in {t.session for t in found}:
            r.problem(f"{where}.session", f"session {session} already has traffic")
        whole: dict[str, int] = {}
        for key, low, high in (
            ("every_ms", MIN_EVERY_MS, MAX_FOR_MS),
            ("for_ms", 1, MAX_FOR_MS),
            ("before_step", 1, len(breakage)),
            ("wait_before_step", 1, len(breakage)),
        ):
            value = table.get(key)
            if value is None:
                if key in ("every_ms", "for_ms"):
                    r.problem(f"{where}.{key}", "missing (a whole number is required)")
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                what = "a breakage step's number" if "step" in key else "a whole number of ms"
                r.problem(f"{where}.{key}", f"must be {what} from {low} to {high}")
                continue
            whole[key] = value
        before = whole.get("before_step", 1)
        wait = whole.get("wait_before_step")
        if wait is not None and wait <= before:
            r.problem(
                f"{where}.wait_before_step",
                f"must come after the step the traffic starts before ({before})",
            )
        sql = _per_engine(r, table, "sql", where, engines)
        for engine in engines:
            text = sql.on(engine)
            if not isinstance(text, str) or not text.strip():
                r.problem(f"{where}.sql", f"missing for {engine} (a string is required)")
                continue
            dialect: Dialect = "postgres" if engine == "postgres" else "sqlite"
            problem = check_sql(text.strip().removesuffix(";"), dialect)
            if problem:
                r.problem(f"{where}.sql", problem)
                continue
            _check_sql(r, text, engine, f"{where}.sql")
        found.append(
            Traffic(
                str(session),
                sql,
                whole.get("every_ms", 0),
                whole.get("for_ms", 0),
                before,
                wait,
                r.locate.line(where),
            )
        )
    return found


def _is_python_step(table: dict[str, Any]) -> bool:
    """`python = ...`, for every engine or in an engine's overrides."""
    return "python" in table or any(
        isinstance(table.get(e), dict) and "python" in table[e] for e in ENGINES
    )


def _python_step(
    r: _Reader,
    table: dict[str, Any],
    where: str,
    engines: list[str],
    sessions: set[str],
    programs: set[str],
) -> Step | None:
    """A step that runs a SQLAlchemy program under the tracer: its source, name and what its
    run must show (exit code, a text in its output)."""
    sql_keys = sorted(
        k
        for k in {*table, *(k for e in ENGINES if isinstance(table.get(e), dict) for k in table[e])}
        if k in SQL_ONLY_KEYS or k == "sql"
    )
    if sql_keys:
        r.problem(
            f"{where}.{sql_keys[0]}",
            "a Python step takes program, python, exit, output and engines: its program's "
            "statements go on its own lanes, and are judged by its exit code and output",
        )
    program = table.get("program")
    if program is None:
        r.problem(f"{where}.program", 'missing: the program\'s file name, e.g. "checkout.py"')
        return None
    if not isinstance(program, str) or not PROGRAM.match(program):
        r.problem(
            f"{where}.program",
            "must be a file name like checkout.py: letters, digits and _, at most 24 before .py "
            "(its lanes are named after it: checkout-1, checkout-2)",
        )
        return None
    stem = program.removesuffix(".py")
    if program in programs:
        r.problem(
            f"{where}.program",
            f"{program} is another step's program too: each step's program needs its own "
            "name, since its lanes are named after it",
        )
    programs.add(program)
    clash = sorted(s for s in sessions if s == stem or s.startswith(f"{stem}-"))
    if clash:
        clashing = f"its lanes ({stem}-1, ...) would clash with session {clash[0]}"
        r.problem(f"{where}.program", clashing)
    python = _per_engine(r, table, "python", where, engines)
    for engine in engines:
        source = python.on(engine)
        if not isinstance(source, str) or not source.strip():
            r.problem(f"{where}.python", f"missing for {engine} (the program's source)")
            continue
        try:
            compile(source, program, "exec")
        except SyntaxError as exc:
            at = f" (line {exc.lineno} of the program)" if exc.lineno else ""
            r.problem(f"{where}.python", f"not valid Python{at}: {exc.msg}")
        except ValueError as exc:  # a NUL character in the source
            r.problem(f"{where}.python", f"not valid Python: {exc}")
    exit_code = _per_engine(r, table, "exit", where, engines)
    output = _per_engine(r, table, "output", where, engines)
    for engine in engines:
        code = exit_code.on(engine)
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            r.problem(f"{where}.exit", "must be the exit code, a whole number (0: success)")
        said = output.on(engine)
        if said is not None and (not isinstance(said, str) or not said):
            r.problem(f"{where}.output", "must be a non-empty string its output contains")
    # A program that declares no exit code must succeed, as a SQL step must run cleanly.
    if exit_code.default is None:
        exit_code = PerEngine(0, exit_code.overrides)
    empty = PerEngine()
    expect = Expectation(
        status=empty,
        error=empty,
        rows=empty,
        rowcount=empty,
        waits=empty,
        findings=empty,
        tag=empty,
        tx_after=empty,
        exit=exit_code,
        output=output,
    )
    return Step(stem, empty, expect, python=python, program=program)


def _expectation(r: _Reader, table: dict[str, Any], where: str, engines: list[str]) -> Expectation:
    fields = {
        k: _per_engine(r, table, k, where, engines)
        for k in STEP_KEYS - {"session", "sql", "engines", "background"} - PYTHON_STEP_KEYS
    }
    for engine in engines:
        status = fields["expect"].on(engine)
        if status is not None and status not in STATUSES:
            r.problem(f"{where}.expect", f"must be one of {', '.join(STATUSES)}, not {status!r}")
        error = fields["error"].on(engine)
        if error is not None and not isinstance(error, str):
            r.problem(
                f"{where}.error", 'must be an error code string, e.g. "23505" or "SQLITE_BUSY"'
            )
        if error is not None and status not in (None, "error"):
            r.problem(f"{where}.error", 'an error code goes with expect = "error"')
        rows = fields["rows"].on(engine)
        if rows is not None and not (
            isinstance(rows, list) and all(isinstance(x, list) for x in rows)
        ):
            r.problem(f"{where}.rows", 'must be a list of rows, each a list: [[1, "a"], [2, "b"]]')
        elif rows is not None:
            _null_cells(r, rows, f"{where}.rows")
        count = fields["rowcount"].on(engine)
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            r.problem(f"{where}.rowcount", "must be a whole number")
        tx_after = fields["tx_after"].on(engine)
        if tx_after is not None and tx_after not in TX_STATES:
            r.problem(f"{where}.tx_after", f"must be one of {', '.join(TX_STATES)}")
        tag = fields["tag"].on(engine)
        if tag is not None and not isinstance(tag, str):
            r.problem(f"{where}.tag", 'must be a command tag string, e.g. "ROLLBACK"')
        waits = fields["waits"].on(engine)
        if waits is not None and not isinstance(waits, bool):
            r.problem(f"{where}.waits", "must be true or false")
        rules = fields["findings"].on(engine)
        if rules is not None:
            from sandbox.guard import RULES

            if not isinstance(rules, list) or not all(isinstance(x, str) for x in rules):
                r.problem(f"{where}.findings", "must be a list of guard rule ids")
            else:
                for rule in rules:
                    if rule not in RULES:
                        r.problem(f"{where}.findings", f"unknown guard rule {rule!r}")
    # An error code implies expect = "error" on each engine it is given for.
    status = fields["expect"]
    implied = {
        e: "error" for e in engines if fields["error"].on(e) is not None and status.on(e) is None
    }
    if implied:
        status = PerEngine(status.default, {**implied, **status.overrides})
    return Expectation(
        status=status,
        error=fields["error"],
        rows=fields["rows"],
        rowcount=fields["rowcount"],
        waits=fields["waits"],
        findings=fields["findings"],
        tag=fields["tag"],
        tx_after=fields["tx_after"],
    )


def _checks(
    r: _Reader, data: dict[str, Any], sessions: set[str], engines: list[str]
) -> list[Check]:
    checks: list[Check] = []
    for i, table in enumerate(r.tables(data, "checks", required=True)):
        where = f"checks[{i}]"
        if "process" in table:
            r.unknown_keys(table, PROCESS_KEYS, where)
            name = r.text(table, "name", where)
            process = _process(r, table, where, sessions, engines)
            empty = PerEngine()
            checks.append(Check(name, empty, empty, None, r.locate.line(where), process=process))
            continue
        r.unknown_keys(table, CHECK_KEYS | set(ENGINES), where)
        _engine_tables(r, table, where, {"sql", "expect"})
        name = r.text(table, "name", where)
        session = table.get("session")
        if session is not None and (not isinstance(session, str) or session not in sessions):
            r.problem(
                f"{where}.session",
                f"unknown session {session!r} (declared: {', '.join(sorted(sessions))})",
            )
        sql = _per_engine(r, table, "sql", where, engines)
        expect = _per_engine(r, table, "expect", where, engines)
        recovery = _recovery(r, table, where)
        if recovery is not None:
            if "sql" in table or "expect" in table:
                r.problem(
                    f"{where}.recovery",
                    "a recovery check judges what the learner ran: it takes no sql or expect",
                )
            checks.append(Check(name, sql, expect, session, r.locate.line(where), tuple(recovery)))
            continue
        for engine in engines:
            text = sql.on(engine)
            if not isinstance(text, str) or not text.strip():
                r.problem(f"{where}.sql", f"missing for {engine} (a string is required)")
            elif text.lstrip().startswith("\\") and not text.lstrip().startswith("\\explain"):
                r.problem(f"{where}.sql", "a check is SQL, or \\explain STATEMENT (its hot steps)")
            elif text.lstrip().startswith("\\") and session is not None:
                r.problem(f"{where}.session", "an \\explain check plans on a fresh session")
            else:
                _check_sql(r, text, engine, f"{where}.sql")
            rows = expect.on(engine)
            if rows is None:
                r.problem(
                    f"{where}.expect", f"missing for {engine}: the rows the check must return"
                )
            elif not (isinstance(rows, list) and all(isinstance(x, list) for x in rows)):
                r.problem(f"{where}.expect", "must be a list of rows, each a list: [[3]]")
            else:
                _null_cells(r, rows, f"{where}.expect")
        checks.append(Check(name, sql, expect, session, r.locate.line(where)))
    return checks


def _null_cells(r: _Reader, rows: list[list[Any]], key: str) -> None:
    """A table in a row stands for SQL NULL, written `{ null = true }`, and for nothing else."""
    for row in rows:
        for cell in row:
            if isinstance(cell, dict) and cell != {"null": True}:
                r.problem(key, "a table in a row stands for SQL NULL: write { null = true }")
                return


def _recovery(r: _Reader, table: dict[str, Any], where: str) -> list[str] | None:
    methods = table.get("recovery")
    if methods is None:
        return None
    known = ", ".join(RECOVERY_METHODS)
    if (
        not isinstance(methods, list)
        or not methods
        or not all(isinstance(m, str) and m in RECOVERY_METHODS for m in methods)
    ):
        r.problem(f"{where}.recovery", f"must list one or more of {known}")
        return []
    return [str(m) for m in methods]


def _process(
    r: _Reader, table: dict[str, Any], where: str, sessions: set[str], engines: list[str]
) -> Process:
    kind = table.get("process")
    if kind not in PROCESS_KINDS:
        r.problem(f"{where}.process", f"must be one of {', '.join(PROCESS_KINDS)}, not {kind!r}")
        return Process(str(kind))
    for key in _PROCESS_NEEDS.get(kind, ()):
        r.text(table, key, where)
    for key in ("table", "column", "version", "pattern"):
        if key in table and key not in (*_PROCESS_NEEDS.get(kind, ()), "version"):
            r.problem(f"{where}.{key}", f"a {kind} check takes no {key}")
    if "version" in table and kind != "no-blind-write":
        r.problem(f"{where}.version", "only a no-blind-write check takes a version column")
    if "tables" in table and kind not in ("one-transaction", "isolated"):
        r.problem(f"{where}.tables", "only a one-transaction or isolated check takes tables")
    for key in ("level", "reads", "with_writes"):
        if key in table and kind != "isolated":
            r.problem(f"{where}.{key}", f"only an isolated check takes {key}")
    level = table.get("level", "repeatable read")
    if level not in ("read committed", "repeatable read", "serializable"):
        r.problem(f"{where}.level", "must be read committed, repeatable read or serializable")
        level = "repeatable read"
    reads = table.get("reads", 1)
    if not isinstance(reads, int) or isinstance(reads, bool) or not 1 <= reads <= 100:
        r.problem(f"{where}.reads", "must be a whole number from 1 to 100")
        reads = 1
    with_writes = table.get("with_writes", False)
    if not isinstance(with_writes, bool):
        r.problem(f"{where}.with_writes", "must be true or false")
        with_writes = False
    times = table.get("times", 4)
    if "times" in table and kind != "no-repeat":
        r.problem(f"{where}.times", "only a no-repeat check takes times")
    if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= 100:
        r.problem(f"{where}.times", "must be a whole number from 1 to 100")
        times = 4
    session = table.get("session")
    if session is not None and (not isinstance(session, str) or session not in sessions):
        declared = ", ".join(sorted(sessions))
        r.problem(f"{where}.session", f"unknown session {session!r} (declared: {declared})")
        session = None
    if "before" in table and kind != "require":
        r.problem(f"{where}.before", "only a require check takes before")
    if "after" in table and kind not in ("require", "apart"):
        r.problem(f"{where}.after", "only a require or apart check takes after")
    patterns = {
        key: r.text(table, key, where, required=False) or None
        for key in ("pattern", "before", "after")
    }
    for key, written in patterns.items():
        if written is not None:
            try:
                re.compile(written)
            except re.error as exc:
                r.problem(f"{where}.{key}", f"not a valid regular expression: {exc}")
    pattern = patterns["pattern"]
    tables = r.strings(table, "tables", where, required=False)
    return Process(
        kind=kind,
        session=session,
        table=r.text(table, "table", where, required=False) or None,
        column=r.text(table, "column", where, required=False) or None,
        version=r.text(table, "version", where, required=False) or None,
        tables=tuple(tables),
        pattern=pattern,
        before=patterns["before"],
        after=patterns["after"],
        level=level if kind == "isolated" else None,
        reads=reads,
        with_writes=with_writes,
        times=times,
        counter=_counter(r, table, where, sessions, engines),
    )


def _counter(
    r: _Reader, table: dict[str, Any], where: str, sessions: set[str], engines: list[str]
) -> tuple[CounterStep, ...]:
    """The counter-example a process check must reject: statements after the breakage."""
    value = table.get("counter")
    key = f"{where}.counter"
    shape = 'a list of statements: [{ session = "A", sql = "UPDATE ..." }]'
    if value is None:
        r.problem(key, f"missing: {shape}, the anti-pattern this check rejects")
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        r.problem(key, f"must be {shape}")
        return ()
    steps: list[CounterStep] = []
    for item in value:
        unknown = set(item) - {"session", "sql"}
        if unknown:
            r.problem(key, f"a counter statement takes session and sql, not {sorted(unknown)}")
        session = item.get("session", "A")
        if not isinstance(session, str) or session not in sessions:
            declared = ", ".join(sorted(sessions))
            r.problem(key, f"unknown session {session!r} (declared: {declared})")
            continue
        sql = item.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            r.problem(key, "each counter statement needs its sql")
            continue
        for engine in engines:
            _check_sql(r, sql, engine, key)
        steps.append(CounterStep(str(session), sql.strip()))
    return tuple(steps)
