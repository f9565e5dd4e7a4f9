"""Start-up (issue 12, item 8): the picker is drawn first, the panes follow, nothing is lost.

The panes are mounted only after the frame that shows the picker (they are hidden behind it);
these tests prove the app is whole afterwards, however fast the learner leaves the picker.
"""

from __future__ import annotations

import sys

from textual.containers import Horizontal
from textual.widgets import TextArea

from sandbox.targets import TargetOptions
from sandbox.ui.app import create_app
from sandbox.ui.screens.dialogs import ScenarioPicker
from tests.test_ui_app import SIZE, ready, until


async def test_the_picker_comes_up_before_the_panes_then_the_panes_follow() -> None:
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        await until(pilot, lambda: bool(app.query_one("#main", Horizontal).children))
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        await until(pilot, lambda: editor.language == "sql")  # highlighting added after
        await pilot.press("escape")
        await until(pilot, lambda: app.focused is editor)


async def test_leaving_the_picker_at_once_still_lands_in_the_editor() -> None:
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        # Dismissed the moment the test sees it (the panes may or may not be mounted yet).
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker), seconds=15)
        app.screen.dismiss(None)
        await ready(pilot, app)
        await until(pilot, lambda: app.focused is app.query_one("#editor", TextArea))


def test_the_first_frame_imports_nothing_it_does_not_draw() -> None:
    """Markdown (markdown-it) is the costliest widget import and only help and the story use
    it; the conductor, targets and engines come with the first sandbox, after the picker."""
    import subprocess

    late = ["markdown_it", "sqlglot", "sandbox.conductor", "sandbox.targets", "sandbox.session"]
    code = (
        "import sys, sandbox.cli, sandbox.lifecycle, sandbox.ui.app, sandbox.ui.screens.dialogs; "
        f"print([m for m in {late!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
