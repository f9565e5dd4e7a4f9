"""The scenario panel: story, task, hints one at a time, Check and Reset."""

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
    ScenarioPanel #title {
        display: none;
        margin: 2 0 1 0;
        padding: 0 2;
        color: $markdown-h2-color;
        background: $markdown-h2-background;
        text-style: $markdown-h2-text-style;
    }
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
        yield Static("", id="checks", markup=False)
        yield Static("", id="hints", markup=False)
        # The title is plain text, drawn like the story's headings; the story is Markdown.
        yield Static("", id="title", markup=False)
        # Imported here, not at the top: Markdown (markdown-it) is the costliest widget to
        # import, and the panes are mounted after the first frame (the picker) is up.
        from textual.widgets import Markdown

        yield Markdown(FREE_PLAY, id="story")

    def load(self, scenario: Scenario | None) -> None:
        self.scenario = scenario
        self.hints_shown = 0
        from textual.widgets import Markdown

        story = self.query_one("#story", Markdown)
        for name in ("hint", "check", "reset"):
            self.query_one(f"#{name}", Button).disabled = scenario is None
        self.query_one("#hints", Static).update("")
        self.query_one("#checks", Static).update("")
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
            if result.check.recovery is not None and not result.passed:
                wanted = describe(result.check.recovery, " or ")
                lines.append(plain(f"   wanted: {wanted}", "dim"))
        lines.append(Text.assemble(("How you recovered:", "bold"), " ", plain(describe(methods))))
        if results and all(r.passed for r in results):
            lines.append(Text("Recovered. Well done.", style="bold green"))
        lines += _diff_lines(diff, diff_problem)
        self.query_one("#checks", Static).update(Text("\n").join(lines))

    def show_next_hint(self) -> bool:
        """One more hint (the Hint button and F2); False in free play, which has none."""
        if self.scenario is None:
            return False
        self.hints_shown = min(self.hints_shown + 1, len(self.scenario.hints))
        shown = self.scenario.hints[: self.hints_shown]
        lines = [plain(f"hint {i}: {hint}") for i, hint in enumerate(shown, 1)]
        if self.hints_shown == len(self.scenario.hints):
            lines.append(Text("(no more hints)", style="dim"))
        self.query_one("#hints", Static).update(Text("\n").join(lines))
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "hint":
            self.show_next_hint()
        elif event.button.id == "check":
            self.post_message(self.CheckPressed())
        elif event.button.id == "reset":
            self.post_message(self.ResetPressed())


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
