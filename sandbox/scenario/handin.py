"""Handed-in work: read a learner's exported session, grade it, and write what a course needs.

A submission is what `--export` (or the app's export) wrote: the `.json` timeline or the
`.sql` replay script; a `.sql` of the learner's own statements will do too. A class is a
folder: one sub-folder per learner (its name is the learner's), or one file per learner
directly in it (the file's name is the learner's). The scenario comes from the command line,
from the export itself (the JSON's `scenario`, the script's `-- Scenario ID` line), or from the
file's name when it is a scenario id.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import UserError
from sandbox.scenario.grading import Attempt, Grade, attempt_from_json, attempt_from_script
from sandbox.scenario.model import Scenario
from sandbox.userfiles import require_readable

SUFFIXES = (".json", ".sql")
MAX_SUBMISSION_BYTES = 16 * 1_048_576  # an export of a long session is a few MiB at most
_SCRIPT_SCENARIO = re.compile(r"^-- Scenario ([a-z0-9][a-z0-9-]{1,63})\b", re.MULTILINE)

CSV_COLUMNS = (
    "learner", "scenario", "engine", "score", "recovered", "data_checks", "process_checks",
    "variants", "care", "rows_lost", "hints", "failed_checks", "minutes", "file", "error",
)  # fmt: skip


def _text(path: Path) -> str:
    require_readable(path, str(path))
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise UserError(f"{path}: too large for an export ({size / 1_048_576:.1f} MiB)")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it: {exc.strerror or exc}") from None


def scenario_named_in(path: Path) -> str | None:
    """The scenario id a submission names (its JSON `scenario`, its script's header)."""
    if path.suffix == ".json":
        try:
            document = json.loads(_text(path))
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        named = document.get("scenario") if isinstance(document, dict) else None
        return named if isinstance(named, str) else None
    match = _SCRIPT_SCENARIO.search(_text(path)[:4096])
    return match.group(1) if match else None


def read_attempt(path: Path, scenario: Scenario, engine: str) -> Attempt:
    """The learner's part of a submission; a file that is not one is a one-line UserError."""
    if path.suffix not in SUFFIXES:
        raise UserError(f"{path}: a submission is a .json or .sql export")
    text = _text(path)
    if path.suffix == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        try:
            return attempt_from_json(document, scenario)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    named = _SCRIPT_SCENARIO.search(text[:4096])
    if named and named.group(1) != scenario.id:
        raise UserError(
            f"{path}: this script is of scenario {named.group(1)!r}, not {scenario.id!r}"
        )
    try:
        return attempt_from_script(text, scenario, engine, str(path))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Submission:
    learner: str
    path: Path


def class_folder(folder: Path) -> Iterator[Submission]:
    """Every submission in a class folder, learner by learner, in name order.

    Where one export wrote both a `.json` and a `.sql` (same name), the `.json` is graded: it
    also records the hints and Checks.
    """
    if not folder.is_dir():
        raise UserError(
            f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder"
        )
    entries = sorted(folder.iterdir())
    top = set(_exports(entries))  # files directly in the folder, one learner each
    for entry in entries:
        if entry.is_dir():
            for path in _exports(sorted(entry.rglob("*"))):
                yield Submission(entry.name, path)
        elif entry in top:
            yield Submission(entry.stem, entry)


def _exports(paths: list[Path]) -> list[Path]:
    found = [p for p in paths if p.is_file() and p.suffix in SUFFIXES]
    return [p for p in found if not (p.suffix == ".sql" and p.with_suffix(".json") in found)]


def result_document(grades: list[Grade], skipped: dict[str, str]) -> dict[str, Any]:
    """result.json: the verdict a course's autograder reads, and every part of it."""
    worst = min((g.score.total for g in grades), default=0)
    return {
        "scenario": grades[0].scenario.id if grades else None,
        "score": worst,
        "max": 100,
        "recovered": bool(grades) and all(g.score.recovered for g in grades),
        "engines": {g.engine: g.to_json() for g in grades},
        "skipped": skipped,
    }


def csv_row(learner: str, path: Path, grade: Grade | None, error: str = "") -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS, "")
    row.update(learner=learner, file=str(path), error=error)
    if grade is None:
        return row
    parts = grade.score.parts
    row.update(
        scenario=grade.scenario.id,
        engine=grade.engine,
        score=grade.score.total,
        recovered="yes" if grade.score.recovered else "no",
        data_checks=f"{parts['checks']['passed']}/{parts['checks']['total']}",
        process_checks=f"{parts['process']['passed']}/{parts['process']['total']}",
        variants=f"{parts['variants']['passed']}/{parts['variants']['total']}",
        care=parts["care"]["points"],
        rows_lost=parts["care"]["rows_lost"],
        hints=_blank(parts["hints"]["used"]),
        failed_checks=_blank(parts["attempts"]["failed"]),
        minutes=_blank(parts["time"]["minutes"]),
    )
    return row


def _blank(value: object) -> object:
    return "" if value is None else value


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per learner per scenario per engine; a spreadsheet or an LMS import takes it."""
    try:
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
