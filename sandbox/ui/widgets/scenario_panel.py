"""The scenario panel: story, task, what happened, hints one at a time, Check, Reset, Next.

A new scenario opens with this panel zoomed to the whole screen (the app does that): the
learner reads the story, the task and the breakage's steps at full width, then Esc goes to
the editor. Everything quoted from the scenario or the engine is plain Text, never markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Static

from sandbox.recovery import describe
from sandbox.ui.text import line, plain

if TYPE_CHECKING:
    from sandbox.scenario.catalog import Listing
    from sandbox.scenario.grading import Score
    from sandbox.scenario.model import Scenario
    from sandbox.scenario.player import CheckResult
    from sandbox.scenario.recap import StepRecap
    from sandbox.snapshots.diff import Diff

FREE_PLAY = "**Free play.** Load a scenario from the command palette (ctrl+p)."
# Shown while the panel fills the screen (a new scenario's briefing, or F10).
KEYS = (
    "Esc: to the editor · F10: this pane back in its place (F10 again zooms it) · "
    "PgDn: read on · F2 hint · F3 check · ctrl+r reset"
)
HAPPENED = "What happened before you arrived"
COMPACT_BELOW = 30  # narrower than this, the buttons lose their borders to fit on one line
DIFF_ROWS = 8  # rows of the diff shown under the checks; \\diff start shows them all


class ScenarioPanel(VerticalScroll):
    DEFAULT_CSS = """
    ScenarioPanel { height: 1fr; }
    ScenarioPanel Horizontal { height: auto; }
    ScenarioPanel Button { min-width: 8; margin-right: 1; }
    ScenarioPanel Button.-textual-compact { min-width: 0; }
    ScenarioPanel #checks { height: auto; }
    ScenarioPanel #score { height: auto; margin: 1 0 0 0; }
    ScenarioPanel #next { display: none; width: 100%; height: auto; }
    ScenarioPanel.-next #next { display: block; }
    ScenarioPanel #keys { display: none; color: $text-muted; margin: 0 0 1 0; }
    ScenarioPanel.-maximized #keys { display: block; }
    ScenarioPanel #happened { height: auto; margin: 1 0; }
    ScenarioPanel #title {
        display: none;
        margin: 0 0 1 0;
        padding: 0 1;
        color: $markdown-h2-color;
        background: $markdown-h2-background;
        text-style: $markdown-h2-text-style;
    }
    """

    class CheckPressed(Message):
        pass

    class ResetPressed(Message):
        pass

    class NextPressed(Message):
        def __init__(self, scenario_id: str) -> None:
            super().__init__()
            self.scenario_id = scenario_id

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.scenario: Scenario | None = None
        self.hints_shown = 0
        self.next_up: Listing | None = None  # the scenario suggested once this one is recovered

    def compose(self) -> ComposeResult:
        # The title is plain text, drawn like the story's headings; the story is Markdown.
        yield Static("", id="title", markup=False)
        yield Static(KEYS, id="keys", markup=False)
        # Buttons and verdicts next: a long story must never push them off the screen.
        with Horizontal(id="buttons"):
            yield Button("Hint", id="hint", disabled=True)
            yield Button("Check", id="check", disabled=True, variant="success")
            yield Button("Reset", id="reset", disabled=True, variant="warning")
        # Suggested after a Check that says Recovered; above the verdicts, which can be long.
        yield Button("Next scenario", id="next", variant="primary")
        yield Static("", id="checks", markup=False)
        yield Static("", id="score", markup=False)
        yield Static("", id="hints", markup=False)
        # Imported here, not at the top: Markdown (markdown-it) is the costliest widget to
        # import, and the panes are mounted after the first frame (the picker) is up.
        from textual.widgets import Markdown

        yield Markdown(FREE_PLAY, id="story")
        yield Static("", id="happened", markup=False)

    def on_resize(self) -> None:
        compact = self.size.width < COMPACT_BELOW
        for button in self.query(Button):
            button.compact = compact

    def load(self, scenario: Scenario | None) -> None:
        self.scenario = scenario
        self.hints_shown = 0
        from textual.widgets import Markdown

        story = self.query_one("#story", Markdown)
        for name in ("hint", "check"):
            self.query_one(f"#{name}", Button).disabled = scenario is None
        # Free play can be reset too (ctrl+r): the button asks first, like the key.
        self.query_one("#reset", Button).disabled = False
        self._show("#hints", "")
        self._show("#checks", "")
        self._show("#score", "")
        self._show("#happened", "")
        self.offer_next(None)
        title = self.query_one("#title", Static)
        title.display = scenario is not None
        if scenario is None:
            story.update(FREE_PLAY)
            return
        title.update(plain(scenario.title))
        story.update(f"{scenario.story}\n\n**Your task:** {scenario.task}")

    def show_checks(
        self,
        results: list[CheckResult],
        methods: list[str],
        diff: Diff | None = None,
        diff_problem: str | None = None,
    ) -> None:
        lines: list[Text] = []
        for result in results:
            mark = ("✔", "bold green") if result.passed else ("✘", "bold red")
            lines.append(Text.assemble(mark, " ", plain(result.check.name)))
            if result.check.process is not None and not result.passed:
                # A require or forbid check's name already says what it wants; its pattern
                # would say it again, less readably. The other kinds say what they accept.
                if result.check.process.kind not in ("require", "forbid"):
                    lines.append(plain(f"   wanted: {result.expected}", "dim"))
                lines.append(plain(f"   seen: {result.actual}", "dim"))
            elif result.check.recovery is not None and not result.passed:
                wanted = describe(result.check.recovery, " or ")
                lines.append(plain(f"   wanted: {wanted}", "dim"))
        lines.append(Text.assemble(("How you recovered:", "bold"), " ", plain(describe(methods))))
        recovered = bool(results) and all(r.passed for r in results)
        self.set_class(recovered, "-recovered")
        if recovered:
            lines.append(Text("Recovered. Well done.", style="bold green"))
        lines += _diff_lines(diff, diff_problem)
        self._show("#checks", Text("\n").join(lines))
        self._show("#score", Text("Grading your statements on the hidden variants…", "italic"))

    def show_unscored(self, why: str) -> None:
        """Grading on the hidden variants failed (the server went away): say so, in place of
        the score, rather than leave "Grading…" up for ever."""
        self._show("#score", plain(f"No score this time: {why}", "bold red"))

    def show_score(self, score: Score, anomaly: list[str]) -> None:
        """The Check's score and its parts; what a hidden variant says, without its data."""
        heading = Text(f"Score {score.total}/100", style="bold")
        lines = [heading]
        parts = score.parts
        variants = parts["variants"]
        checks = parts["checks"]
        if variants["passed"] < variants["total"] and checks["passed"] == checks["total"]:
            lines.append(
                Text(
                    "The data is right here, wrong on a hidden dataset: your statements gave "
                    "another answer on other data. Work values out in SQL; don't type them in.",
                    style="bold yellow",
                )
            )
        hints, failed, minutes = parts["hints"], parts["attempts"], parts["time"]
        said = (
            f"data checks {parts['checks']['passed']}/{parts['checks']['total']} · "
            f"process {parts['process']['passed']}/{parts['process']['total']} · "
            f"hidden variants {variants['passed']}/{variants['total']} · "
            f"rows lost {parts['care']['rows_lost']} · hints {hints['used'] or 0} · "
            f"Checks before this {failed['failed'] or 0}"
        )
        if minutes["minutes"] is not None:
            said += f" · {minutes['minutes']:.0f} of {minutes['expected']} min"
        lines.append(plain(said, "dim"))
        if anomaly:
            lines.append(Text(""))
            lines.append(plain(anomaly[0], "bold"))
            lines += [plain(line) for line in anomaly[1:]]
        self._show("#score", Text("\n").join(lines))

    def _show(self, selector: str, content: Text | str) -> None:
        """Fill one of the text parts; an empty one takes no room at all."""
        part = self.query_one(selector, Static)
        part.update(content)
        part.display = bool(str(content))

    @property
    def recovered(self) -> bool:
        """The last Check passed every check."""
        return self.has_class("-recovered")

    def show_breakage(self, steps: list[StepRecap]) -> None:
        """The scenario's breakage as a numbered list: who ran what, and what became of it."""
        if not steps:
            self._show("#happened", "")
            return
        text = Text(HAPPENED, style="bold")
        for step in steps:
            text.append(f"\n{step.number}. session ", style="bold")
            text.append_text(plain(step.session, "bold"))
            text.append(": ", style="bold")
            text.append_text(plain(step.sql.replace("\n", "\n   ")))
            text.append("\n   → ")
            text.append_text(plain(step.outcome, "" if step.settled else "italic"))
        self._show("#happened", text)

    def offer_next(self, listing: Listing | None) -> None:
        """Suggest the next scenario (a focused button: Enter loads it), or stop suggesting."""
        self.next_up = listing
        self.set_class(listing is not None, "-next")
        if listing is not None:
            button = self.query_one("#next", Button)
            button.label = Text.assemble("Next: ", plain(listing.title), " (Enter)")
            button.focus()

    def show_next_hint(self) -> bool:
        """One more hint (the Hint button and F2); False in free play, which has none."""
        if self.scenario is None:
            return False
        self.hints_shown = min(self.hints_shown + 1, len(self.scenario.hints))
        shown = self.scenario.hints[: self.hints_shown]
        lines = [plain(f"hint {i}: {hint}") for i, hint in enumerate(shown, 1)]
        if self.hints_shown == len(self.scenario.hints):
            lines.append(Text("(no more hints)", style="dim"))
        self._show("#hints", Text("\n").join(lines))
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "hint":
            self.show_next_hint()
        elif event.button.id == "check":
            self.post_message(self.CheckPressed())
        elif event.button.id == "reset":
            self.post_message(self.ResetPressed())
        elif event.button.id == "next" and self.next_up is not None:
            self.post_message(self.NextPressed(self.next_up.id))


def _diff_lines(diff: Diff | None, problem: str | None) -> list[Text]:
    """The changes since the pre-mistake snapshot: a summary and the first few rows."""
    if diff is None:
        return [plain(f"no diff: {problem}", "dim")] if problem else []
    lines = [Text.assemble(("Since the start snapshot:", "bold"), " ", plain(diff.summary()))]
    _, rows = diff.display()
    for table, change, key, row in rows[:DIFF_ROWS]:
        lines.append(line(f"  {table} {change} {key} {row}"))
    if len(rows) > DIFF_ROWS:
        lines.append(Text(f"  … {len(rows) - DIFF_ROWS} more: run \\diff start", style="dim"))
    return lines
