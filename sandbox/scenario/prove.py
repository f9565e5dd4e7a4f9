"""`dbsandbox validate --prove`: show that a scenario's checks mean something, on real engines.

A check that passes on the broken state proves nothing; a reference solution that fails on a
hidden variant would fail every honest learner; a process check that accepts its own
counter-example forbids nothing. For each engine the scenario runs on, this plays:

1. the breakage alone: every check must fail;
2. the breakage and the reference solution, on the dataset shown and on every variant: the
   steps behave as declared and every check passes;
3. for each process check, the breakage and its counter-example: that check must fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.runner import RunOptions
from sandbox.scenario.grading import TargetOpener
from sandbox.scenario.loader import on_variant
from sandbox.scenario.model import Scenario
from sandbox.scenario.player import Replayed, ScenarioBroken, ScenarioRun, play


@dataclass
class Proof:
    """What proving one scenario on one engine showed; `failures` empty means proven."""

    scenario: str
    engine: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def proven(self) -> bool:
        return not self.failures

    def say(self, ok: bool, text: str) -> None:
        self.lines.append(f"  {'ok' if ok else 'XX'} {text}")
        if not ok:
            self.failures.append(text)


def _first_mismatch(run: ScenarioRun) -> str | None:
    for step in run.steps:
        if not step.passed:
            sql = " ".join(step.sent.split())[:60]
            return f"{step.phase} step [{step.step.session}] {sql}: {'; '.join(step.mismatches)}"
    return None


def _statements(scenario: Scenario, engine: str) -> list[tuple[str, str]]:
    return [
        (step.session, " ".join(step.source(engine).split()))
        for step in scenario.solution
        if step.runs_on(engine)
    ]


def prove(
    scenario: Scenario,
    engine: str,
    opener: TargetOpener,
    options: RunOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> Proof:
    """Prove one scenario on one engine (see the module's docstring)."""
    proof = Proof(scenario.id, engine)

    def run(built: Scenario, **how: object) -> ScenarioRun | None:
        if progress is not None:
            progress(f"{scenario.id} ({engine}): {built.dataset or 'dataset shown'}")
        try:
            with opener() as target:
                return play(built, target, options=options, **how)  # type: ignore[arg-type]
        except ScenarioBroken as exc:
            proof.say(False, str(exc))
            return None

    broken = run(scenario)
    if broken is not None:
        passing = [c.check.name for c in broken.checks if c.passed]
        proof.say(
            not passing,
            f"on the broken state {len(broken.checks) - len(passing)} of {len(broken.checks)} "
            "checks fail"
            + (f"; these pass before any fix and prove nothing: {passing}" if passing else ""),
        )
    datasets = [scenario, *(on_variant(scenario, v.name) for v in scenario.variants)]
    shown = _statements(scenario, engine)
    for built in datasets[1:]:
        # A learner types what the dataset shown tells them: a reference solution that needs a
        # hidden value to pass would fail every honest learner on that variant.
        differs = next(
            (b for a, b in zip(shown, _statements(built, engine), strict=True) if a != b), None
        )
        proof.say(
            differs is None,
            f"the reference solution sends the same statements on variant {built.dataset!r}"
            if differs is None
            else f"on variant {built.dataset!r} the reference solution sends {differs[1]!r}: "
            "it needs a value only the variant has, which no learner can see",
        )
    for built in datasets:
        name = f"variant {built.dataset!r}" if built.dataset else "the dataset shown"
        solved = run(built, solution=True)
        if solved is None:
            continue
        mismatch = _first_mismatch(solved)
        failing = [c.check.name for c in solved.checks if not c.passed]
        if mismatch:
            proof.say(False, f"on {name}: {mismatch}")
        else:
            proof.say(
                not failing,
                f"the reference solution passes every check on {name}"
                if not failing
                else f"the reference solution fails on {name}: {failing}",
            )
    if not scenario.variants:
        proof.say(False, "no hidden variant: a hard-coded answer would pass")
    for check in scenario.checks:
        process = check.process
        if process is None:
            continue
        counter = tuple(Replayed(step.session, step.sql) for step in process.counter)
        played = run(scenario, attempt=counter)
        if played is None:
            continue
        verdict = next(c for c in played.checks if c.check is check)
        proof.say(
            not verdict.passed,
            f"process check {check.name!r} rejects its counter-example ({verdict.actual})"
            if not verdict.passed
            else f"process check {check.name!r} accepts its counter-example: it forbids nothing",
        )
    return proof
