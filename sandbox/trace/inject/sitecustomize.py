"""Loaded by every Python process `dbsandbox trace` starts (this folder leads its PYTHONPATH).

It attaches dbsandbox's SQLAlchemy listeners (`_dbsandbox_trace`), then runs the
sitecustomize this one shadows, if the interpreter has one, so the program's own start-up is
unchanged.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import _dbsandbox_trace  # type: ignore[import-not-found]  # beside this file

    _dbsandbox_trace.install()
except Exception as _exc:  # a tracer that cannot start must not stop the program
    print(f"dbsandbox trace: the tracer could not start: {_exc}", file=sys.stderr)


def _chain() -> None:
    rest = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_chain()
