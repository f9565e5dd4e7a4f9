"""What an installed dbsandbox needs besides its code: the app's stylesheet and the catalog.

The suite imports `sandbox` from the source tree, so these checks run in a subprocess whose
working directory is elsewhere: with a plain `pip install .` (as CI does) they look at the
installed package, which is where a missing data file would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOURCE_TREE = str(Path(__file__).resolve().parent.parent)


def outside(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DBSANDBOX_SCENARIOS")}
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )


def test_the_app_stylesheet_ships_with_the_package(tmp_path: Path) -> None:
    done = outside(
        tmp_path,
        "-c",
        "import pathlib, sandbox.ui; print(pathlib.Path(sandbox.ui.__file__).parent)",
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "app.tcss").is_file()


def test_the_catalog_is_found_from_any_folder(tmp_path: Path) -> None:
    done = outside(tmp_path, "-m", "sandbox", "scenarios", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) >= 14


def test_the_app_starts_and_stops_headless(tmp_path: Path) -> None:
    # Mounting needs the stylesheet: a missing one fails here with a non-zero exit.
    script = (
        "import asyncio\n"
        "from sandbox.targets import TargetOptions\n"
        "from sandbox.ui.app import create_app\n"
        "async def main():\n"
        "    app = create_app(TargetOptions(), pick=False)\n"
        "    async with app.run_test() as pilot:\n"
        "        await pilot.pause()\n"
        "asyncio.run(main())\n"
        "print('started')\n"
    )
    done = outside(tmp_path, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "started"
    assert SOURCE_TREE not in done.stderr
