"""Progress between launches (issue 13, item 4): the store on real files, `dbsandbox progress`
through the real CLI, and the picker's marks and suggestion in the real app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import OptionList

from sandbox.cli import main
from sandbox.progress import (
    PROGRESS_ENV,
    VERSION,
    ProgressError,
    ProgressStore,
    default_path,
    suggest_next,
)
from sandbox.scenario.catalog import listings
from sandbox.targets import TargetOptions
from sandbox.ui.app import create_app
from sandbox.ui.screens.dialogs import NEXT, ScenarioPicker
from tests.test_ui_app import SIZE, until

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def record(store: ProgressStore, scenario_id: str, score: int, **kwargs: Any) -> None:
    values: dict[str, Any] = {
        "title": f"title of {scenario_id}",
        "engine": "sqlite",
        "recovered": False,
        "parts": {"data": score},
    }
    values.update(kwargs)
    store.record(scenario_id, score=score, **values)


def leftovers(folder: Path) -> list[str]:
    """What a write left in the folder besides the progress file and its lock."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith((".json", ".lock")))


# --------------------------------------------------------------------------- the store


def test_where_progress_is_kept_env_first_then_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "mine.json"))
    assert default_path() == tmp_path / "mine.json"
    assert ProgressStore(tmp_path / "given.json").path == tmp_path / "given.json"
    monkeypatch.delenv(PROGRESS_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_path() == tmp_path / "state" / "dbsandbox" / "progress.json"


def test_a_record_counts_attempts_keeps_the_best_score_and_its_parts(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "progress.json"  # the folders are created
    store = ProgressStore(path)
    assert store.entries() == {}
    assert not path.parent.exists()  # reading never creates anything
    store.record(
        "lost-update",
        title="Lost update",
        engine="sqlite",
        score=40,
        recovered=False,
        parts={"data": 40, "process": 0},
        at=T0,
    )
    store.record(
        "lost-update",
        title="Lost update",
        engine="postgres",
        score=87,
        recovered=True,
        parts={"data": 50, "process": 37},
        at=T0 + timedelta(days=1),
    )
    store.record(
        "lost-update",
        title="Lost update",
        engine="sqlite",
        score=10,
        recovered=False,
        parts={"data": 10},
        at=T0 + timedelta(days=2),
    )
    entry = ProgressStore(path).entry("lost-update")  # a fresh store: it is on disk
    assert entry is not None
    assert entry.attempts == 3
    assert entry.best_score == 87
    assert entry.best_parts == {"data": 50, "process": 37}  # the best score's, not the last's
    assert entry.done  # recovered once: a worse attempt later does not undo it
    assert entry.status == "done" and entry.mark == "✔ 87"
    assert entry.engines == ("sqlite", "postgres")
    assert datetime.fromisoformat(entry.first_played) == T0
    assert datetime.fromisoformat(entry.last_played) == T0 + timedelta(days=2)
    saved = json.loads(path.read_text())
    assert saved["version"] == VERSION
    assert saved["scenarios"]["lost-update"]["best_score"] == 87


def test_an_attempt_that_did_not_recover_is_attempted_not_done(tmp_path: Path) -> None:
    store = ProgressStore(tmp_path / "progress.json")
    record(store, "missing-where", 40)
    entry = store.entry("missing-where")
    assert entry is not None
    assert (entry.status, entry.mark, entry.attempts) == ("attempted", "◐ 40", 1)
    assert store.entry("lost-update") is None


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    store = ProgressStore(path)
    record(store, "a", 10)
    before = path.stat().st_ino
    with path.open() as reader:  # a reader of the old file keeps a whole old file
        record(store, "b", 20)
        old = json.loads(reader.read())
    assert set(old["scenarios"]) == {"a"}
    assert set(json.loads(path.read_text())["scenarios"]) == {"a", "b"}
    assert path.stat().st_ino != before  # renamed over, not rewritten in place
    assert leftovers(tmp_path) == []


def test_a_file_the_learner_made_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"version": 1, "scenarios": {}}))
    path.chmod(0o644)
    record(ProgressStore(path), "a", 10)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "content",
    [
        b"not json at all",
        b'{"version": 1, "scenarios": {"a": {"title": "t"}}}',  # an entry without its fields
        b'{"version": 1, "scenarios": {"a": {"title": "t", "attempts": true, "best_score": 1, '
        b'"done": false, "first_played": "2026-01-01T00:00:00+00:00", '
        b'"last_played": "2026-01-01T00:00:00+00:00"}}}',  # true is not a count
        b'{"version": 1, "scenarios": {"a": {"title": "t", "attempts": 1, "best_score": 1, '
        b'"done": false, "first_played": "yesterday", "last_played": "today"}}}',
        b'{"scenarios": {}}',  # no version
        b"[1, 2, 3]",
        b"\xff\xfe not UTF-8",
    ],
)
def test_a_file_that_is_not_progress_json_is_moved_aside_never_overwritten(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "progress.json"
    path.write_bytes(content)
    original = path.read_bytes()
    store = ProgressStore(path)
    assert store.entries() == {}
    [aside] = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert aside.name.startswith("progress.json.corrupt-")
    datetime.strptime(aside.name.removeprefix("progress.json.corrupt-"), "%Y%m%d-%H%M%S")
    assert aside.read_bytes() == original  # nothing of it lost
    [warning] = store.take_warnings()
    assert "\n" not in warning
    assert str(path) in warning and aside.name in warning and "starting afresh" in warning
    assert store.take_warnings() == []  # said once
    record(store, "a", 10)  # a fresh file starts
    assert set(json.loads(path.read_text())["scenarios"]) == {"a"}
    assert aside.read_bytes() == original


def test_two_corrupt_files_in_the_same_second_are_both_kept(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    for text in ("first", "second"):
        path.write_text(text)
        ProgressStore(path).entries()
    kept = sorted(p.read_text() for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert kept == ["first", "second"]


def test_a_file_from_a_newer_dbsandbox_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"version": VERSION + 1, "scenarios": {}}))
    original = path.read_text()
    store = ProgressStore(path)
    with pytest.raises(ProgressError, match="written by a newer dbsandbox"):
        store.entries()
    with pytest.raises(ProgressError, match="written by a newer dbsandbox"):
        record(store, "a", 10)
    assert path.read_text() == original
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [path.name]


def test_an_unwritable_location_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    store = ProgressStore(blocker / "progress.json")
    with pytest.raises(ProgressError, match=r"cannot read progress file .*: Not a directory"):
        store.entries()
    with pytest.raises(ProgressError) as raised:
        record(store, "a", 10)
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"cannot save progress to {blocker / 'progress.json'}: {blocker} is not a folder"
    )
    assert blocker.read_text() == "a file where the folder should be"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "progress.json"
    record(ProgressStore(path), "a", 10)
    before = path.read_text()
    folder.chmod(0o500)
    try:
        with pytest.raises(ProgressError, match=r"cannot save progress to .*: Permission denied"):
            record(ProgressStore(path), "b", 20)
    finally:
        folder.chmod(0o700)
    assert path.read_text() == before
    assert leftovers(folder) == []


def test_a_directory_or_a_pipe_at_the_path_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "progress.json"
    folder.mkdir()
    with pytest.raises(ProgressError, match="it is a directory, not a regular file"):
        ProgressStore(folder).entries()
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    # A named pipe would block the read until someone wrote to it: refused before any open.
    with pytest.raises(ProgressError, match="named pipe"):
        ProgressStore(pipe).entries()


def test_two_stores_interleaving_keep_each_others_entries(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    first, second = ProgressStore(path), ProgressStore(path)  # two app instances
    assert first.entries() == {} and second.entries() == {}
    record(first, "lost-update", 30)
    record(second, "missing-where", 50, recovered=True)
    record(first, "lost-update", 60)
    record(second, "lost-update", 45)
    found = ProgressStore(path).entries()
    assert set(found) == {"lost-update", "missing-where"}
    assert found["lost-update"].attempts == 3 and found["lost-update"].best_score == 60
    assert found["missing-where"].done


def test_two_processes_recording_at_once_lose_no_attempt(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    rounds = 40
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sandbox.progress import ProgressStore\n"
        "store = ProgressStore(Path(sys.argv[1]))\n"
        f"for i in range({rounds}):\n"
        "    store.record('shared', title='t', engine=sys.argv[2], score=i,\n"
        "                 recovered=False, parts={})\n"
        "    store.record(sys.argv[2], title='t', engine=sys.argv[2], score=i,\n"
        "                 recovered=False, parts={})\n"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name], cwd=ROOT)
        for name in ("sqlite", "postgres")
    ]
    assert [run.wait(timeout=60) for run in runs] == [0, 0]
    found = ProgressStore(path).entries()
    assert found["shared"].attempts == 2 * rounds
    assert found["sqlite"].attempts == rounds and found["postgres"].attempts == rounds
    assert set(found["shared"].engines) == {"sqlite", "postgres"}
    assert leftovers(tmp_path) == []


def test_parts_the_file_cannot_hold_fail_before_the_file_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    store = ProgressStore(path)
    record(store, "a", 10)
    before = path.read_text()
    with pytest.raises(TypeError):
        record(store, "a", 99, parts={"when": datetime.now()})
    assert path.read_text() == before


def test_the_next_suggestion_is_the_first_not_done_in_catalog_order(tmp_path: Path) -> None:
    found = listings()
    sqlite_ones = [s for s in found if s.supports("sqlite")]
    postgres_only = [s for s in found if not s.supports("sqlite")]
    assert len(sqlite_ones) >= 2 and postgres_only
    store = ProgressStore(tmp_path / "progress.json")
    assert suggest_next(reversed(found), {}, "sqlite") == sqlite_ones[0]  # catalog order
    record(store, sqlite_ones[0].id, 30)  # attempted only: still the one to finish
    assert suggest_next(found, store.entries(), "sqlite") == sqlite_ones[0]
    record(store, sqlite_ones[0].id, 90, recovered=True)
    assert suggest_next(found, store.entries(), "sqlite") == sqlite_ones[1]
    for listing in sqlite_ones:
        record(store, listing.id, 90, recovered=True)
    assert suggest_next(found, store.entries(), "sqlite") is None
    assert suggest_next(found, store.entries(), "postgres") == postgres_only[0]
    assert suggest_next(found, store.entries(), None) == postgres_only[0]


# --------------------------------------------------------------------------- the command


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_progress_lists_every_scenario_in_catalog_order_with_its_status(
    capsys: pytest.CaptureFixture[str], private_progress: Path
) -> None:
    found = listings()
    first, second = found[0], found[1]
    last = found[-1]
    store = ProgressStore()
    assert store.path == private_progress
    record(store, first.id, 87, recovered=True, at=T0)
    record(store, last.id, 40, at=T0)
    record(store, last.id, 35, at=T0 + timedelta(hours=1))
    code, out, err = cli(capsys, "progress")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["SCENARIO", "STATUS", "BEST", "ATTEMPTS", "LAST", "PLAYED", "TITLE"]
    rows = lines[1 : 1 + len(found)]
    assert [row.split()[0] for row in rows] == [s.id for s in found]
    shown = (T0 + timedelta(hours=1)).astimezone().strftime("%Y-%m-%d %H:%M")
    assert rows[0].split()[1:4] == ["done", "87", "1"]
    assert rows[-1].split()[1:4] == ["attempted", "40", "2"]
    assert shown in rows[-1] and rows[-1].endswith(last.title)
    assert rows[1].split()[1:5] == ["not", "started", "-", "0"]
    assert lines[-2] == f"1 of {len(found)} done (kept in {private_progress})"
    assert lines[-1] == f"next: {second.id} ({second.title})"


def test_progress_json_carries_the_same(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.json"  # --progress wins over DBSANDBOX_PROGRESS
    found = listings()
    store = ProgressStore(path)
    record(store, found[0].id, 40, engine="postgres", at=T0)
    record(store, "my-own-scenario", 70, recovered=True, at=T0)  # played from a .toml path
    code, out, err = cli(capsys, "progress", "--format", "json", "--progress", str(path))
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["path"] == str(path)
    assert (data["done"], data["total"]) == (0, len(found))  # the catalog's are counted
    assert data["next"] == {"id": found[0].id, "title": found[0].title}
    rows = {row["id"]: row for row in data["scenarios"]}
    assert [row["id"] for row in data["scenarios"][: len(found)]] == [s.id for s in found]
    played = rows[found[0].id]
    assert played["status"] == "attempted" and played["in_catalog"]
    assert (played["best_score"], played["attempts"], played["engines"]) == (40, 1, ["postgres"])
    assert played["title"] == found[0].title
    assert datetime.fromisoformat(played["last_played"]) == T0
    assert played["best_parts"] == {"data": 40}
    unplayed = rows[found[1].id]
    assert (unplayed["status"], unplayed["best_score"], unplayed["attempts"]) == (
        "not started",
        None,
        0,
    )
    outside = rows["my-own-scenario"]
    assert (outside["status"], outside["in_catalog"]) == ("done", False)


def test_progress_suggests_for_an_engine_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = listings()
    store = ProgressStore()
    for listing in found:
        if listing.supports("sqlite"):
            record(store, listing.id, 90, recovered=True)
    out = cli(capsys, "progress", "--engine", "sqlite")[1]
    assert out.splitlines()[-1] == "next: none, every scenario that runs on sqlite is done"
    postgres_only = next(s for s in found if not s.supports("sqlite"))
    out = cli(capsys, "progress", "--engine", "postgres")[1]
    assert out.splitlines()[-1] == f"next: {postgres_only.id} ({postgres_only.title})"


def test_progress_on_a_corrupt_file_warns_once_and_shows_a_fresh_start(
    capsys: pytest.CaptureFixture[str], private_progress: Path
) -> None:
    private_progress.parent.mkdir(parents=True)
    private_progress.write_text("{ broken")
    code, out, err = cli(capsys, "progress")
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("warning: progress file ")
    assert "starting afresh" in err
    assert f"0 of {len(listings())} done" in out
    assert not private_progress.exists()
    assert cli(capsys, "progress")[2] == ""  # moved aside: nothing to say the second time


@pytest.mark.parametrize("problem", ["directory", "newer"])
def test_progress_that_cannot_be_read_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "progress.json"
    if problem == "directory":
        path.mkdir()
    else:
        path.write_text(json.dumps({"version": 99, "scenarios": {}}))
    code, out, err = cli(capsys, "progress", "--progress", str(path))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("dbsandbox: ")
    assert str(path) in err and "Traceback" not in err


def test_progress_options_go_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--progress", "x.json", "progress"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--progress before a command is for the app only" in err
    with pytest.raises(SystemExit) as exited:
        main(["progress", "--format", "yaml"])
    assert exited.value.code == 2


def test_progress_help_states_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["progress", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 shown; 2 the progress file cannot be read" in out
    assert "130 interrupted" in out


def test_progress_as_a_process_reads_the_environments_file(private_progress: Path) -> None:
    record(ProgressStore(private_progress), listings()[0].id, 55, recovered=True)
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "progress", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    assert data["path"] == str(private_progress)
    assert data["done"] == 1 and data["scenarios"][0]["best_score"] == 55


class AppOpened:
    """Stands in for the terminal app: the progress file bare `dbsandbox` or `play` opens."""

    def __init__(self) -> None:
        self.progress: list[Path | None] = []

    def __call__(self, *args: object, progress_path: Path | None = None) -> int:
        self.progress.append(progress_path)
        return 0


@pytest.mark.parametrize("command", [[], ["play"]])
def test_the_app_gets_the_progress_option(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
) -> None:
    import sandbox.cli

    opened = AppOpened()
    monkeypatch.setattr(sandbox.cli, "_open_app", opened)
    assert cli(capsys, *command, "--progress", str(tmp_path / "p.json")) == (0, "", "")
    assert cli(capsys, *command) == (0, "", "")
    assert opened.progress == [tmp_path / "p.json", None]  # None: the store finds its own


# --------------------------------------------------------------------------- the picker


def prompt(picker: ScenarioPicker, scenario_id: str) -> str:
    return str(picker.query_one("#scenario-list", OptionList).get_option(scenario_id).prompt)


async def test_the_picker_marks_scores_and_starts_on_the_next_scenario(
    private_progress: Path,
) -> None:
    found = listings()
    first, second, third = found[0], found[1], found[2]
    assert first.supports("sqlite") and second.supports("sqlite")
    store = ProgressStore(private_progress)
    record(store, first.id, 87, recovered=True)
    record(store, second.id, 40)
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        picker = app.screen
        assert isinstance(picker, ScenarioPicker)
        assert picker.suggested == second.id
        title_line = prompt(picker, first.id).splitlines()[0]
        assert title_line.endswith("✔ 87") and NEXT not in title_line
        assert prompt(picker, second.id).splitlines()[0].endswith("◐ 40  " + NEXT)
        assert "✔" not in prompt(picker, third.id) and "◐" not in prompt(picker, third.id)
        with_next = [s.id for s in found if NEXT in prompt(picker, s.id)]
        assert with_next == [second.id]
        option_list = picker.query_one("#scenario-list", OptionList)
        assert option_list.highlighted == 1
        await pilot.press("enter")  # Enter plays the suggestion
        await until(pilot, lambda: app.bridge.scenario is not None, seconds=30)
        assert app.bridge.scenario is not None and app.bridge.scenario.id == second.id


async def test_the_picker_reads_the_progress_file_the_app_was_given(tmp_path: Path) -> None:
    found = [s for s in listings() if s.supports("sqlite")]
    path = tmp_path / "given.json"
    record(ProgressStore(path), found[0].id, 95, recovered=True)
    app = create_app(TargetOptions(), pick=True, progress_path=path)
    assert app.progress.path == path
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        picker = app.screen
        assert isinstance(picker, ScenarioPicker)
        assert prompt(picker, found[0].id).splitlines()[0].endswith("✔ 95")
        assert picker.suggested == found[1].id
        option_list = picker.query_one("#scenario-list", OptionList)
        highlighted = option_list.highlighted
        assert highlighted is not None and picker.scenarios[highlighted].id == found[1].id


async def test_a_corrupt_progress_file_is_a_notice_and_the_picker_still_comes_up(
    private_progress: Path,
) -> None:
    private_progress.parent.mkdir(parents=True)
    private_progress.write_text("garbage")
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        said = [str(n.message) for n in app._notifications]
        assert any(
            "was not valid progress JSON: moved to progress.json.corrupt-" in s for s in said
        )
        assert not private_progress.exists()


async def test_recording_from_the_app_writes_the_file_or_says_why_not(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    app = create_app(TargetOptions(), pick=False, progress_path=blocker / "progress.json")
    async with app.run_test(size=SIZE) as pilot:
        entry = app.record_progress(
            "lost-update", title="t", engine="sqlite", score=50, recovered=True, parts={}
        )
        assert entry is None
        await pilot.pause()
        said = [str(n.message) for n in app._notifications]
        assert any(s.startswith("cannot save progress to ") for s in said)
    good = tmp_path / "good.json"
    app = create_app(TargetOptions(), pick=False, progress_path=good)
    async with app.run_test(size=SIZE):
        entry = app.record_progress(
            "lost-update", title="t", engine="sqlite", score=50, recovered=True, parts={"x": 1}
        )
        assert entry is not None and entry.done
    assert ProgressStore(good).entries()["lost-update"].best_parts == {"x": 1}


async def test_a_first_launch_starts_on_the_first_scenario_without_marks() -> None:
    found = listings()
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        picker = app.screen
        assert isinstance(picker, ScenarioPicker)
        assert picker.suggested == found[0].id
        # Nothing played yet: the highlight alone says where to start.
        assert not any(NEXT in prompt(picker, s.id) for s in found)
        assert picker.query_one("#scenario-list", OptionList).highlighted == 0
