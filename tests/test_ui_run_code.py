"""The app asks before it runs a scenario's Python code from outside the catalog (Pilot)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Label

from sandbox.scenario import trust
from sandbox.scenario.catalog import use_folders
from sandbox.targets import TargetOptions
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.screens.dialogs import ConfirmRunCode
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from tests.test_python_steps import pack
from tests.test_ui_app import SIZE, ready, until


def loaded_id(panel: ScenarioPanel) -> str | None:
    return panel.scenario.id if panel.scenario is not None else None


@pytest.fixture
def a_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A class pack holding a scenario with a Python step, and the file its program touches
    when it runs."""
    path = pack(tmp_path)
    marker = tmp_path / "ran"
    monkeypatch.setenv("PYSTEP_MARKER", str(marker))
    use_folders([path.parent])
    trust.trust_all(False)
    try:
        yield path, marker
    finally:
        use_folders([])
        trust._trusted.clear()


def asking(app: DbSandboxApp) -> bool:
    """The question is on screen: the dialog is up and composed (pushed is not enough)."""
    return isinstance(app.screen, ConfirmRunCode) and bool(app.screen.query(".dialog-title"))


async def test_no_keeps_the_code_from_running_and_yes_runs_it(a_pack: tuple[Path, Path]) -> None:
    path, marker = a_pack
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        app.open_scenario("forgetful")  # what picking it leads to
        await until(pilot, lambda: asking(app))
        title = str(app.screen.query_one(".dialog-title", Label).render())
        assert title == f"This scenario runs Python code from {path}. Run it?"
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmRunCode))
        await app.workers.wait_for_complete()
        assert loaded_id(panel) is None  # the free play sandbox stays
        assert not marker.exists()
        assert "free play" in app.sub_title

        app.open_scenario("forgetful")
        await until(pilot, lambda: asking(app))
        await pilot.press("y")
        await until(pilot, lambda: panel.scenario is not None)
        assert loaded_id(panel) == "forgetful"
        assert marker.exists()
        conductor = app.bridge.conductor
        assert conductor is not None
        assert "forgetful-1" in {e.session for e in conductor.executions}
        # Said yes once: the same file is not asked about again in this app.
        app.open_scenario("forgetful")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmRunCode)


async def test_a_catalog_scenario_with_python_runs_without_asking() -> None:
    use_folders([])
    trust.trust_all(False)
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        app.open_scenario("orm-version-conflict")
        await until(
            pilot, lambda: panel.scenario is not None or isinstance(app.screen, ConfirmRunCode)
        )
        assert not isinstance(app.screen, ConfirmRunCode)
        conductor = app.bridge.conductor
        assert conductor is not None
        assert {"clerks-1", "clerks-2"} <= {e.session for e in conductor.executions}
