"""The scenario panel: story, task, hints one at a time, Check and Reset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Markdown, Static

from sandbox.ui.text import escape

if TYPE_CHECKING:
    from sandbox.scenario.model import Scenario
    from sandbox.scenario.player import CheckResult

FREE_PLAY = "**Free play.** Load a scenario from the command palette (ctrl+p)."


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

    def show_checks(self, results: list[CheckResult]) -> None:
        lines = []
        for result in results:
            mark = "[b green]✔[/]" if result.passed else "[b red]✘[/]"
            lines.append(f"{mark} {escape(result.check.name)}")
        if results and all(r.passed for r in results):
            lines.append("[b green]Recovered. Well done.[/]")
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
