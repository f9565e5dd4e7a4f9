"""A breakage scenario: the stage, the mistake, the learner's task, and how recovery is judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("sqlite", "postgres")
DIFFICULTIES = ("beginner", "intermediate", "advanced")
STATUSES = ("ok", "error")
TX_STATES = ("idle", "in_transaction", "failed")


def null_to_none(value: object) -> object:
    """TOML has no NULL: `{ null = true }` in expected rows stands for SQL NULL."""
    if isinstance(value, dict) and value == {"null": True}:
        return None
    if isinstance(value, list):
        return [null_to_none(v) for v in value]
    return value


POSTGRES_LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")


@dataclass(frozen=True)
class PerEngine:
    """A value that may differ per engine: `default`, or an override for one engine."""

    default: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def on(self, engine: str) -> Any:
        return self.overrides.get(engine, self.default)


@dataclass(frozen=True)
class SessionSpec:
    name: str
    isolation: str | None = None  # PostgreSQL isolation level for every transaction it opens


@dataclass(frozen=True)
class Expectation:
    """What a scripted step must do. Unset fields are not checked."""

    status: PerEngine  # "ok" or "error"
    error: PerEngine  # error code: SQLSTATE or SQLite result-code name
    rows: PerEngine  # list of rows (lists of JSON values)
    rowcount: PerEngine
    waits: PerEngine  # True: must wait on a lock first; False: must not
    findings: PerEngine  # guard rule ids it must raise (errors and warnings)
    tag: PerEngine  # the server's command tag (PostgreSQL), e.g. "ROLLBACK" for a failed COMMIT
    tx_after: PerEngine  # "idle", "in_transaction" or "failed"
    # A Python step's: the program's exit code, and text its output must contain.
    exit: PerEngine = field(default_factory=PerEngine)
    output: PerEngine = field(default_factory=PerEngine)

    def on(self, engine: str) -> dict[str, Any]:
        """The expectations in force on one engine, unset ones left out."""
        fields = {
            "status": self.status,
            "error": self.error,
            "rows": self.rows,
            "rowcount": self.rowcount,
            "waits": self.waits,
            "findings": self.findings,
            "tag": self.tag,
            "tx_after": self.tx_after,
            "exit": self.exit,
            "output": self.output,
        }
        return {k: v.on(engine) for k, v in fields.items() if v.on(engine) is not None}


@dataclass(frozen=True)
class Step:
    session: str
    sql: PerEngine
    expect: Expectation
    line: int | None = None  # where the step is in the scenario file
    engines: tuple[str, ...] | None = None  # None: every engine of the scenario
    # Go on to the next step as soon as this one waits on a lock (like `\background` in a
    # script): on SQLite the only way a later COMMIT can release it within its busy timeout.
    background: bool = False
    # A Python step: an unmodified SQLAlchemy program (its source, per engine) run under the
    # tracer instead of `sql`; `program` is its file name, whose stem names its lanes
    # (checkout.py -> checkout-1, checkout-2, one per connection).
    python: PerEngine | None = None
    program: str | None = None

    def runs_on(self, engine: str) -> bool:
        return self.engines is None or engine in self.engines

    @property
    def is_python(self) -> bool:
        return self.python is not None

    @property
    def lane_prefix(self) -> str:
        """What the lanes of a Python step's program are called, before their number."""
        return (self.program or "").removesuffix(".py")

    def source(self, engine: str) -> str:
        """What the step sends on `engine`, as a report shows it: its SQL or its program."""
        return str((self.python if self.python is not None else self.sql).on(engine) or "")


@dataclass(frozen=True)
class Traffic:
    """A traffic session of the breakage (`[[traffic]]`): `sql` again and again on `session`,
    `every_ms` after the previous one ended, for `for_ms`, like an application's requests.

    It starts just before breakage step `before_step` (1-based); with `wait_before_step`, that
    step waits until the traffic's duration is over. The breakage ends only once every
    traffic's duration is over, so the learner's part never mixes with it.
    """

    session: str
    sql: PerEngine
    every_ms: int
    for_ms: int
    before_step: int = 1
    wait_before_step: int | None = None
    line: int | None = None


RECOVERY_METHODS = ("rollback", "savepoint", "restore", "repair")

# What a concurrency scenario makes happen, by the names the literature uses (Berenson et al.,
# "A Critique of ANSI SQL Isolation Levels", and the engines' manuals).
ANOMALIES = (
    "lost update", "dirty write", "dirty read", "non-repeatable read", "phantom read",
    "read skew", "write skew", "deadlock", "serialization failure", "duplicate insert",
    "check-then-act",
)  # fmt: skip

# Process checks: how the learner worked, judged from the statements they ran
# (sandbox.scenario.process says what each one accepts).
PROCESS_KINDS = (
    "one-transaction", "no-blind-write", "savepoint", "rollback-first", "committed", "forbid",
    "require", "isolated", "no-repeat", "apart",
)  # fmt: skip

# Minutes a learner should need, when a scenario does not say.
DEFAULT_MINUTES = {"beginner": 5, "intermediate": 10, "advanced": 15}


@dataclass(frozen=True)
class CounterStep:
    """One statement of a process check's counter-example: the anti-pattern it must reject."""

    session: str
    sql: str


@dataclass(frozen=True)
class Process:
    """A process check's rule and its parameters (unused ones stay empty)."""

    kind: str
    session: str | None = None
    table: str | None = None
    column: str | None = None
    version: str | None = None
    tables: tuple[str, ...] = ()
    pattern: str | None = None
    before: str | None = None  # require: the match must come before the first of these
    # require: the match must come after the last of these; apart: the statement whose
    # transaction the matches must not share
    after: str | None = None
    level: str | None = None  # isolated: the weakest isolation level that will do
    reads: int = 1  # isolated: how many reads the transaction must hold
    with_writes: bool = False  # isolated: the fix's writes in that same transaction, committed
    # no-repeat: the most values one statement may be run with (more is a loop, row by row)
    times: int = 4
    counter: tuple[CounterStep, ...] = ()


@dataclass(frozen=True)
class Variant:
    """A hidden dataset: other values for the scenario's [vars], and SQL added to its setup."""

    name: str
    values: dict[str, Any]
    setup: str | None = None


@dataclass(frozen=True)
class Check:
    """A question whose answer proves recovery.

    A data check runs `sql` and compares its rows with `expect`; a recovery check asks how the
    learner got out (`recovery`: any of RECOVERY_METHODS will do), judged from what they ran.
    """

    name: str
    sql: PerEngine
    expect: PerEngine  # rows
    session: str | None = None  # None: a fresh session that sees only committed data
    line: int | None = None
    recovery: tuple[str, ...] | None = None
    process: Process | None = None

    @property
    def kind(self) -> str:
        """ "data" (rows), "recovery" (the way out) or "process" (how the work was done)."""
        if self.process is not None:
            return "process"
        return "recovery" if self.recovery is not None else "data"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    summary: str
    difficulty: str
    tags: tuple[str, ...]
    engines: tuple[str, ...]
    story: str
    task: str
    setup: PerEngine  # SQL script per engine (already transpiled)
    sessions: tuple[SessionSpec, ...]
    breakage: tuple[Step, ...]
    checks: tuple[Check, ...]
    hints: tuple[str, ...]
    solution: tuple[Step, ...]
    path: Path | None = None
    engine_note: str | None = None  # why a scenario runs on one engine only
    anomaly: str | None = None  # what a concurrency scenario makes happen (ANOMALIES)
    minutes: int | None = None  # the time a learner should need (None: by difficulty)
    variants: tuple[Variant, ...] = ()
    dataset: str | None = None  # the variant this copy was built for (None: the one shown)
    traffic: tuple[Traffic, ...] = ()  # traffic sessions of the breakage

    @property
    def has_python(self) -> bool:
        """Some step is a Python program: the file is code, run only when trusted."""
        return any(step.is_python for step in (*self.breakage, *self.solution))

    @property
    def expected_minutes(self) -> int:
        return self.minutes or DEFAULT_MINUTES.get(self.difficulty, 10)

    def supports(self, engine: str) -> bool:
        return engine in self.engines

    def listing(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "difficulty": self.difficulty,
            "engines": list(self.engines),
            "tags": list(self.tags),
            "summary": self.summary,
            "anomaly": self.anomaly,
            "minutes": self.expected_minutes,
            "variants": len(self.variants),  # how many; what they hold stays hidden
            "python": self.has_python,  # it runs Python programs: code, trusted or not run
        }
