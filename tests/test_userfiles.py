"""Every path argument that is opened must be a regular file: a named pipe, a directory or a
device is a one-line error, found with stat() before anything opens it (opening a named pipe
for reading would wait for a writer forever; pytest's timeout is the backstop here)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.scenario.catalog import CATALOG_ENV, listings

CATALOG = Path(__file__).parent.parent / "scenarios"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sandboxes go under this test's own directory, so none left behind goes unseen."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def special(tmp_path: Path, kind: str, name: str) -> Path:
    """A path of the given kind: a named pipe, a directory, or a character device (a link to
    /dev/null under the name asked for)."""
    path = tmp_path / name
    if kind == "device":
        path.symlink_to("/dev/null")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    return path


WHAT = {
    "fifo": "it is a named pipe (FIFO), not a regular file",
    "directory": "it is a directory, not a regular file",
    "device": "it is a character device, not a regular file",
}
KINDS = sorted(WHAT)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own exits
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert (code, out) == (2, ""), (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("dbsandbox: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def script(tmp_path: Path) -> str:
    path = tmp_path / "s.sql"
    path.write_text("SELECT 1;\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("kind", KINDS)
def test_run_script(
    tmp_path: Path, private_tmp: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = special(tmp_path, kind, "script.sql")
    one_line_error(*run_cli(capsys, "run", str(path)), f"cannot read {path}: {WHAT[kind]}")
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_lint_files(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = special(tmp_path, kind, "named.sql")
    one_line_error(
        *run_cli(capsys, "lint", script(tmp_path), str(path)), f"cannot read {path}: {WHAT[kind]}"
    )


def test_lint_skips_a_named_pipe_inside_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder is searched for *.sql files; a pipe named like one is not a file to lint."""
    script(tmp_path)
    os.mkfifo(tmp_path / "pipe.sql")
    assert run_cli(capsys, "lint", str(tmp_path)) == (0, "", "")


@pytest.mark.parametrize("kind", KINDS)
def test_from_file(
    tmp_path: Path, private_tmp: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = special(tmp_path, kind, "copy.db")
    one_line_error(
        *run_cli(capsys, "run", script(tmp_path), "--from", str(path)),
        f"cannot read {path}: {WHAT[kind]}",
    )
    assert list(private_tmp.iterdir()) == []


def test_from_file_with_a_named_pipe_as_its_wal(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Companion files are copied only when they are regular files."""
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    os.mkfifo(tmp_path / "app.db-wal")
    code, out, err = run_cli(capsys, "run", script(tmp_path), "--from", str(database))
    assert (code, err) == (0, "") and "SELECT 1" in out
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_export_destination(
    tmp_path: Path, private_tmp: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "directory":
        # A directory is a documented destination (it gets all three files); one of the
        # files it would get being a directory is not.
        folder = special(tmp_path, "directory", "out")
        (folder / "blocker.json").mkdir()
        path, shown = folder / "blocker", folder / "blocker.json"
    else:
        path = shown = special(tmp_path, kind, "out.json")
    one_line_error(
        *run_cli(capsys, "run", script(tmp_path), "--export", str(path)),
        f"cannot write {shown}: {WHAT[kind]}",
    )
    assert list(private_tmp.iterdir()) == []  # refused before any sandbox was made


@pytest.mark.parametrize("kind", KINDS)
def test_scenario_path(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = special(tmp_path, kind, "mine.toml")
    for command in ("run", "play"):
        one_line_error(*run_cli(capsys, command, str(path)), f"cannot read {path}: {WHAT[kind]}")


def test_catalog_entry_that_is_a_named_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "missing-where.toml").write_bytes((CATALOG / "missing-where.toml").read_bytes())
    os.mkfifo(folder / "stuck.toml")
    monkeypatch.setenv(CATALOG_ENV, str(folder))
    # The app's picker leaves it out (the pack sits beside the catalog, whose entries stay);
    # the commands that load the catalog name it.
    ids = [entry.id for entry in listings()]
    assert "stuck" not in ids and "missing-where" in ids and "lost-update" in ids
    assert next(e for e in listings() if e.id == "missing-where").pack == str(folder)
    one_line_error(*run_cli(capsys, "scenarios"), f"{folder / 'stuck.toml'}: {WHAT['fifo']}")
    one_line_error(*run_cli(capsys, "run", "stuck"), WHAT["fifo"])
    code, out, err = run_cli(capsys, "validate", str(folder))
    assert (code, out, err) == (1, f"{folder / 'stuck.toml'}: {WHAT['fifo']}\n", "")
