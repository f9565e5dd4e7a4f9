"""Scenario files of every wrong shape give problems, never a traceback.

The catalog's real scenario files are mutated, deterministically (fixed seeds, bounded counts):
every key of every kind of table given a value of every TOML type it should not have, and
random edits (keys dropped, values replaced, wrapped in arrays or tables, unknown keys
injected, steps duplicated). For each mutant, `validate` returns problems or none without
raising, `load` agrees with it, and the real CLI (`dbsandbox validate`, and `dbsandbox run` on a
file it rejects) answers with an exit code, never a traceback. Beside the mutants: files that
break the reader itself (deep nesting, huge integers, a BOM, bytes that are not UTF-8, a named
pipe, a file far too large).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.scenario.loader import MAX_FILE_BYTES, ScenarioInvalid, load, validate

CATALOG = sorted((Path(__file__).parent.parent / "scenarios").glob("*.toml"))
SEED = 20261122

# A value of every TOML type, and the awkward members of each.
ODD_VALUES: list[Any] = [
    "",
    "   ",
    "x",
    "A\x00B",
    "\\snapshot",
    "\\restore",
    "SELECT 1; SELECT 2",
    "é" * 3 + "\u202e",
    "x" * 5_000,
    0,
    -1,
    2**63,
    10**40,
    1.5,
    math.inf,
    math.nan,
    True,
    False,
    [],
    [""],
    ["A"],
    [1],
    [[1]],
    [[[]]],
    [{"null": True}],
    {},
    {"null": True},
    {"a": {"b": [1]}},
    dt.datetime(2026, 1, 2, 3, 4, 5),
    dt.date(2026, 1, 2),
    dt.time(3, 4, 5),
]
# One of each type, for the test that tries every key with every type.
EACH_TYPE: list[Any] = [
    "",
    "A\x00B",
    0,
    10**40,
    1.5,
    True,
    [],
    ["A"],
    [[1]],
    {},
    {"a": {"b": [1]}},
    dt.datetime(2026, 1, 2, 3, 4, 5),
    dt.time(3, 4, 5),
]


# --------------------------------------------------------------------------- writing TOML


def _string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else _string(name)


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    assert isinstance(value, dict), value
    return "{" + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + "}"


def dumps(document: dict[str, Any]) -> str:
    """TOML for a parsed document: tables and arrays of tables get headers (so problems are
    located by line as in a real file), everything inside them is written inline."""
    lines = [f"{_key(k)} = {_inline(v)}" for k, v in document.items() if not _sectioned(v)]
    for key, value in document.items():
        if isinstance(value, dict):
            lines += ["", f"[{_key(key)}]"]
            lines += [f"{_key(k)} = {_inline(v)}" for k, v in value.items()]
        elif _sectioned(value):
            for table in value:
                lines += ["", f"[[{_key(key)}]]"]
                lines += [f"{_key(k)} = {_inline(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _sectioned(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _original(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def test_the_writer_round_trips_the_catalog() -> None:
    """The mutants are only as good as the writer: it must reproduce every real file."""
    for path in CATALOG:
        document = _original(path)
        assert tomllib.loads(dumps(document)) == document, path.name
    odd = {"v": ODD_VALUES[:14] + ODD_VALUES[16:]}  # nan never equals itself
    assert tomllib.loads(dumps(odd)) == odd


# --------------------------------------------------------------------------- mutating


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document: keys of tables and items of arrays, depth first."""
    if not isinstance(value, dict | list):
        return []
    found: list[tuple[Any, ...]] = []
    for key, child in value.items() if isinstance(value, dict) else enumerate(value):
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


def _mutate(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutant: dict[str, Any] = json.loads(json.dumps(document))  # a deep copy of plain data
    for _ in range(rng.randint(1, 3)):
        places = _paths(mutant)
        if not places:
            break
        path = rng.choice(places)
        parent, last = _parent(mutant, path), path[-1]
        edit = rng.choice(["drop", "replace", "replace", "wrap", "table", "inject", "repeat"])
        if edit == "drop":
            del parent[last]
        elif edit == "replace":
            parent[last] = rng.choice(ODD_VALUES)
        elif edit == "wrap":
            parent[last] = [parent[last]]
        elif edit == "table":
            parent[last] = {"sqlite": parent[last]}
        elif edit == "inject" and isinstance(parent, dict):
            parent[rng.choice(["extra", "sqlite", "postgres", "expect", "session"])] = rng.choice(
                ODD_VALUES
            )
        elif edit == "repeat" and isinstance(parent, list):
            parent.append(parent[last])
    return mutant


def _shapes() -> dict[str, tuple[Path, tuple[Any, ...]]]:
    """One place for each kind of key: `breakage[].sqlite.error` -> (file, path in it)."""
    shapes: dict[str, tuple[Path, tuple[Any, ...]]] = {}
    for file in CATALOG:
        for path in _paths(_original(file)):
            if isinstance(path[-1], int):
                continue  # an item of a list: the key holding the list is the place
            shape = "".join(f".{p}" if isinstance(p, str) else "[]" for p in path)[1:]
            # A [vars] name is the author's, not a kind of key: vars.opening and vars.total
            # are one place (each new scenario's names would otherwise add places, and time).
            shape = re.sub(r"(^|\.)vars\.[^.]+$", r"\1vars.*", shape)
            shapes.setdefault(shape, (file, path))
    return shapes


SHAPES = _shapes()


# --------------------------------------------------------------------------- checking


def _check(path: Path) -> list[str]:
    """validate and load agree, and neither raises anything but ScenarioInvalid."""
    problems = validate(path)
    try:
        load(path)
    except ScenarioInvalid as exc:
        assert exc.problems == problems
    else:
        assert problems == []
    for problem in problems:
        assert str(problem).startswith(str(path))
        assert problem.message and "\n" not in str(problem), problem
        assert problem.line is None or problem.line >= 1
    return [str(p) for p in problems]


def _write(folder: Path, document: dict[str, Any], name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(dumps(document), encoding="utf-8")
    return path


def test_every_key_given_every_wrong_type(tmp_path: Path) -> None:
    assert len(SHAPES) > 40  # the catalog exercises every kind of key
    for _shape, (file, path) in sorted(SHAPES.items()):
        for value in EACH_TYPE:
            mutant = _original(file)
            parent = _parent(mutant, path)
            original, parent[path[-1]] = parent[path[-1]], value
            problems = _check(_write(tmp_path, mutant, file.stem))
            if type(value) is not type(original) and path[0] != "vars":
                # Every key has one type; a value of another is always reported. A [vars]
                # value may be any scalar by design (a variant must keep its type, checked
                # there).
                assert problems, (_shape, value)


def test_a_check_session_given_as_an_array(tmp_path: Path) -> None:
    """The shape that once raised TypeError (unhashable type: 'list') inside the loader."""
    document = _original(CATALOG[0])
    document["checks"][0]["session"] = ["A"]
    path = _write(tmp_path, document, CATALOG[0].stem)
    assert any("checks[0].session: unknown session ['A']" in p for p in _check(path))


def test_random_mutants_of_the_catalog(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    verdicts = {"valid": 0, "problems": 0}
    for round_ in range(600):
        file = CATALOG[round_ % len(CATALOG)]
        mutant = _mutate(_original(file), rng)
        problems = _check(_write(tmp_path, mutant, file.stem))
        verdicts["problems" if problems else "valid"] += 1
    # Both kinds happen: the mutations are neither all harmless nor all fatal.
    assert verdicts["valid"] > 20 and verdicts["problems"] > 300, verdicts


def test_the_cli_answers_every_mutant_in_one_piece(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dbsandbox validate` exits 0 or 1, `dbsandbox run` on a rejected file exits 2 with one
    line; neither prints a traceback."""
    rng = random.Random(SEED + 1)
    for round_ in range(60):
        file = CATALOG[round_ % len(CATALOG)]
        path = _write(tmp_path, _mutate(_original(file), rng), file.stem)
        code = main(["validate", str(path)])
        out, err = capsys.readouterr()
        assert code in (0, 1) and err == "", (out, err)
        if code == 1:
            assert out and all(line.startswith(str(path)) for line in out.splitlines())
            assert main(["run", str(path)]) == 2
            out, err = capsys.readouterr()
            assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- unreadable files


def _one_problem(path: Path, *fragments: str) -> None:
    (problem,) = _check(path)
    for fragment in fragments:
        assert fragment in problem, problem


def test_arrays_nested_too_deeply_for_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("hints = " + "[" * 5_000 + "]" * 5_000 + "\n", encoding="utf-8")
    _one_problem(path, "nested too deeply")
    tables = tmp_path / "tables.toml"
    tables.write_text("id = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n", encoding="utf-8")
    _one_problem(tables, "nested too deeply")


def test_values_nested_deep_but_readable(tmp_path: Path) -> None:
    """Deep enough to pass the reader, in every place of a check a value is walked."""
    deep = "[" * 300 + "1" + "]" * 300
    for key in ("expect", "sql", "name", "recovery", "session"):
        document = _original(CATALOG[0])
        document["checks"][0][key] = "DEEP"
        path = tmp_path / CATALOG[0].name
        path.write_text(dumps(document).replace('"DEEP"', deep), encoding="utf-8")
        problems = _check(path)
        # Expected rows may hold lists (PostgreSQL arrays): deep ones are still rows.
        assert problems or key == "expect", key


def test_an_integer_longer_than_python_reads(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("id = " + "9" * 5_000 + "\n", encoding="utf-8")
    _one_problem(path, "cannot be read")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / CATALOG[0].name
    path.write_bytes(b"\xef\xbb\xbf" + CATALOG[0].read_bytes())
    assert _check(path) == []


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('title = "café"\n'.encode("latin-1"))
    _one_problem(path, "not UTF-8 text", "0xe9", "offset 12")


def test_a_nul_byte_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nul.toml"
    path.write_bytes(b'title = "a\x00b"\n')
    _one_problem(path, "not valid TOML")


def test_a_file_far_too_large(tmp_path: Path) -> None:
    path = tmp_path / "large.toml"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written, the size is real
    _one_problem(path, "too large", "at most 1 MiB")


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "missing"])
def test_only_regular_files_are_read(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.toml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = Path("/dev/null")
    expected = {
        "fifo": "it is a named pipe (FIFO), not a regular file",
        "directory": "it is a directory, not a regular file",
        "device": "it is a character device, not a regular file",
        "missing": "no such file",
    }[kind]
    _one_problem(path, expected)
    if kind == "directory":
        # A folder is validated file by file: an entry named like a scenario is looked at too.
        (folder := tmp_path / "catalog").mkdir()
        (folder / "y.toml").mkdir()
        path, expected = folder / "y.toml", "it is a directory, not a regular file"
        assert main(["validate", str(folder)]) == 1
    else:
        assert main(["validate", str(path)]) == 1
    assert capsys.readouterr() == (f"{path}: {expected}\n", "")
