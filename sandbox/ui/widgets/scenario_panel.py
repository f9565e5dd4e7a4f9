"""The scenario panel: story, task, hints one at a time, Check and Reset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Markdown, Static

from sandbox.recovery import describe
from sandbox.ui.text import escape

if TYPE_CHECKING:
    from sandbox.scenario.model import Scenario
    from sandbox.scenario.player import CheckResult
    from sandbox.snapshots.diff import Diff

FREE_PLAY = "**Free play.** Load a scenario from the command palette (ctrl+p)."
DIFF_ROWS = 8  # rows of the diff shown under the checks; \\diff start shows them all


class ScenarioPanel(VerticalScroll):
    DEFAULT_CSS = """
    ScenarioPanel { height: 1fr; }
    ScenarioPanel Horizontal { height: auto; }
    ScenarioPanel Button { min-width: 8; margin-right: 1; }
    ScenarioPanel #checks { height: auto; }
    """

    class CheckPressed(Message):
        pass

    class ResetPressed(Message):
        pass

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.scenario: Scenario | None = None
        self.hints_shown = 0

    def compose(self) -> ComposeResult:
        # Buttons and verdicts first: a long story must never push them off the screen.
        with Horizontal():
            yield Button("Hint", id="hint", disabled=True)
            yield Button("Check", id="check", disabled=True, variant="success")
            yield Button("Reset", id="reset", disabled=True, variant="warning")
        yield Static("", id="checks")
        yield Static("", id="hints")
        yield Markdown(FREE_PLAY, id="story")

    def load(self, scenario: Scenario | None) -> None:
        self.scenario = scenario
        self.hints_shown = 0
        story = self.query_one("#story", Markdown)
        for name in ("hint", "check", "reset"):
            self.query_one(f"#{name}", Button).disabled = scenario is None
        self.query_one("#hints", Static).update("")
        self.query_one("#checks", Static).update("")
        if scenario is None:
            story.update(FREE_PLAY)
            return
        story.update(f"## {scenario.title}\n\n{scenario.story}\n\n**Your task:** {scenario.task}")

    def show_checks(
        self,
        results: list[CheckResult],
        methods: list[str],
        diff: Diff | None = None,
        diff_problem: str | None = None,
    ) -> None:
        lines = []
        for result in results:
            mark = "[b green]✔[/]" if result.passed else "[b red]✘[/]"
            lines.append(f"{mark} {escape(result.check.name)}")
            if result.check.recovery is not None and not result.passed:
                wanted = describe(result.check.recovery, " or ")
                lines.append(f"   [dim]wanted: {escape(wanted)}[/]")
        lines.append(f"[b]How you recovered:[/] {escape(describe(methods))}")
        if results and all(r.passed for r in results):
            lines.append("[b green]Recovered. Well done.[/]")
        lines += _diff_lines(diff, diff_problem)
        self.query_one("#checks", Static).update("\n".join(lines))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "hint" and self.scenario is not None:
            self.hints_shown = min(self.hints_shown + 1, len(self.scenario.hints))
            shown = self.scenario.hints[: self.hints_shown]
            text = "\n".join(f"hint {i}: {escape(h)}" for i, h in enumerate(shown, 1))
            if self.hints_shown == len(self.scenario.hints):
                text += "\n[dim](no more hints)[/]"
            self.query_one("#hints", Static).update(text)
        elif event.button.id == "check":
            self.post_message(self.CheckPressed())
        elif event.button.id == "reset":
            self.post_message(self.ResetPressed())


def _diff_lines(diff: Diff | None, problem: str | None) -> list[str]:
    """The changes since the pre-mistake snapshot: a summary and the first few rows."""
    if diff is None:
        return [f"[dim]no diff: {escape(problem)}[/]"] if problem else []
    lines = [f"[b]Since the start snapshot:[/] {escape(diff.summary())}"]
    _, rows = diff.display()
    for table, change, key, row in rows[:DIFF_ROWS]:
        lines.append(
            f"  {escape(str(table))} {escape(str(change))} {escape(str(key))} {escape(str(row))}"
        )
    if len(rows) > DIFF_ROWS:
        lines.append(f"  [dim]… {len(rows) - DIFF_ROWS} more: run \\\\diff start[/]")
    return lines
