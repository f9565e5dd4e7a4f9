"""Modal dialogs: the scenario picker, the guard's confirmation, quitting, running a
scenario's code, and help.

Titles, SQL, findings and session lines are shown as `Text` (see sandbox.ui.text), never markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from sandbox.ui.text import line, plain

if TYPE_CHECKING:
    from sandbox.guard.policy import Review
    from sandbox.progress import Entry
    from sandbox.scenario.catalog import Listing

NEXT = "→ next"


class ScenarioPicker(ModalScreen[str | None]):
    """Choose a breakage scenario; Esc goes to free play.

    Each scenario played before shows `✔ 87` (done, best score) or `◐ 40` (attempted); the
    highlight starts on the suggested one, marked `→ next`.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_picker", "Free play", show=True),
        # The app's own ctrl+q takes the key first; this entry puts it in the picker's footer.
        Binding("ctrl+q", "app.quit_safely", "Quit", show=True),
    ]

    def __init__(
        self,
        scenarios: list[Listing],
        engine: str,
        progress: Mapping[str, Entry] | None = None,
        suggested: str | None = None,
    ) -> None:
        super().__init__()
        self.scenarios = scenarios
        self.engine = engine
        self.progress = progress or {}
        self.suggested = suggested

    def compose(self) -> ComposeResult:
        with Vertical(id="picker", classes="dialog"):
            yield Label("Pick a breakage scenario  (Esc: free play)", classes="dialog-title")
            options = [self._option(s) for s in self.scenarios]
            yield OptionList(*options, id="scenario-list", markup=False)
        yield Footer()

    def _option(self, scenario: Listing) -> Option:
        """Title; id, difficulty, engines and tags; then the summary, or why it is greyed."""
        facts = f"{scenario.id} · {scenario.difficulty} · {'+'.join(scenario.engines)}"
        if scenario.pack is not None:
            # A class pack's scenario says where it comes from: the folder the teacher gave.
            facts += f" · from {PurePath(scenario.pack).name}"
        if scenario.tags:
            facts += f" · {', '.join(scenario.tags)}"
        why_not = scenario.unavailable_reason(self.engine)
        about = why_not if why_not is not None else " ".join(scenario.summary.split())
        details = line(facts)
        details.stylize("dim")
        parts: list[str | Text] = [line(scenario.title), *self._marks(scenario.id)]
        parts += ["\n  ", details]
        if about:
            note = line(about)
            note.stylize("italic" if why_not is None else "bold")
            parts += ["\n  ", note]
        return Option(Text.assemble(*parts), id=scenario.id, disabled=why_not is not None)

    def _marks(self, scenario_id: str) -> list[str | Text]:
        """After the title: the best score so far, and whether it is the one to play next."""
        marks: list[str | Text] = []
        entry = self.progress.get(scenario_id)
        if entry is not None:
            marks += ["  ", Text(entry.mark, style="bold green" if entry.done else "yellow")]
        # Only once something was played: on a first launch the highlight on the first
        # scenario already says where to start.
        if scenario_id == self.suggested and self.progress:
            marks += ["  ", Text(NEXT, style="bold")]
        return marks

    def on_mount(self) -> None:
        # Start on the suggested scenario, else the first that can be played here; never on a
        # greyed one.
        playable = [i for i, s in enumerate(self.scenarios) if s.supports(self.engine)]
        ids = [s.id for s in self.scenarios]
        start = ids.index(self.suggested) if self.suggested in ids else None
        if start is None or start not in playable:
            start = playable[0] if playable else None
        if start is not None:
            self.query_one("#scenario-list", OptionList).highlighted = start

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_picker(self) -> None:
        self.dismiss(None)


class ConfirmStatement(ModalScreen[bool]):
    """The guard stopped a statement: show what it would do; the default answer is no."""

    # The safe answer has the focus once the buttons exist (Textual focuses it after compose);
    # an on_mount query for it could run before they did, and failed on a busy machine.
    AUTO_FOCUS = "#no"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No, don't run it", show=True),
        Binding("n", "answer(False)", "No", show=False),
        Binding("y", "answer(True)", "Yes, run it", show=True),
    ]

    def __init__(self, sql: str, review: Review) -> None:
        super().__init__()
        self.sql = sql
        self.review = review

    def compose(self) -> ComposeResult:
        blocked = self._blocked
        with Vertical(id="confirm", classes="dialog"):
            yield Label("The guard stopped this statement", classes="dialog-title")
            sql = plain(" ".join(self.sql.split())[:300])
            yield Static(sql, id="confirm-sql", markup=False)
            with VerticalScroll(id="confirm-findings"):
                for finding, impact in zip(self.review.findings, self.review.impacts, strict=True):
                    rule = plain(f"{finding.severity} {finding.rule}", "bold")
                    yield Static(Text.assemble(rule, ": ", plain(finding.message)), markup=False)
                    if impact is not None and impact.summary:
                        summary = Text.assemble("  ", plain(impact.summary, "bold"))
                        yield Static(summary, classes="impact", markup=False)
                    fix = Text.assemble("  fix: ", plain(finding.fix))
                    yield Static(fix, classes="fix", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("No, don't run it", id="no", variant="primary")
                if not blocked:
                    yield Button("Yes, run it", id="yes", variant="error")
            if blocked:
                yield Label("It reaches outside the sandbox, so it cannot run here.")
                keys = "n or Esc: close · nothing runs"
            else:
                keys = "y: yes, run it · n or Esc: no, don't run it · Tab moves between the buttons"
            yield Static(plain(keys), classes="dialog-keys", markup=False)
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A blocked statement has no "yes": its footer must not offer one.
        return not (action == "answer" and parameters == (True,) and self._blocked)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes and not self._blocked)

    @property
    def _blocked(self) -> bool:
        return str(self.review.decision) == "block"  # Decision.BLOCK, without importing the guard


class ConfirmQuit(ModalScreen[bool]):
    """Leaving (quit, reset, switch): say exactly what is lost, and ask; Stay is the default."""

    # The safe answer has the focus once the buttons exist (Textual focuses it after compose);
    # an on_mount query for it could run before they did, and failed on a busy machine.
    AUTO_FOCUS = "#stay"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "Stay", show=True),
        Binding("n", "answer(False)", "Stay", show=False),
        Binding("y", "answer(True)", "Yes", show=True),
    ]

    def __init__(self, what: str, lines: list[str], go: str | None = None) -> None:
        super().__init__()
        self.what = what
        self.lines = lines
        self.go = go or f"{what} and roll back"

    def compose(self) -> ComposeResult:
        with Vertical(id="quit", classes="dialog"):
            yield Label(plain(f"{self.what}?"), classes="dialog-title", markup=False)
            for text in self.lines:
                yield Static(plain(text), markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stay", id="stay", variant="primary")
                yield Button(plain(self.go), id="go", variant="error")
            yield Static(
                plain(f"y: {self.go} · n or Esc: stay · Tab moves between the buttons"),
                classes="dialog-keys",
                markup=False,
            )
        # The main screen's footer would list keys that do nothing while this dialog is up.
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "go")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmRunCode(ModalScreen[bool]):
    """A scenario from outside the catalog with Python steps is code: ask before it runs.
    No is the default."""

    # The safe answer has the focus once the buttons exist (Textual focuses it after compose);
    # an on_mount query for it could run before they did, and failed on a busy machine.
    AUTO_FOCUS = "#no"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No", show=True),
        Binding("n", "answer(False)", "No", show=False),
        Binding("y", "answer(True)", "Yes", show=True),
    ]

    def __init__(self, path: PurePath) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="run-code", classes="dialog"):
            yield Label(
                plain(f"This scenario runs Python code from {self.path}. Run it?"),
                classes="dialog-title",
                markup=False,
            )
            yield Static(
                plain(
                    "Its programs run as you, with your files and network: say yes only to a "
                    "file you trust (the built-in catalog's need no asking)."
                ),
                markup=False,
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button("Yes, run it", id="yes", variant="error")
            yield Static(
                plain("y: run it · n or Esc: do not · Tab moves between the buttons"),
                classes="dialog-keys",
                markup=False,
            )
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", show=True),
        Binding("f1", "close", "Close", show=False),
    ]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            # Imported here: Markdown (markdown-it) is the costliest widget to import, and the
            # first frame (the picker) has no use for it.
            from textual.widgets import Markdown

            yield Markdown(self.text)
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
