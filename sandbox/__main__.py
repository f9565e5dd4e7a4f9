"""`python -m sandbox` runs the same CLI as `dbsandbox`."""

import sys

from sandbox.cli import main

sys.exit(main())
