"""``python -m expertlib.reproduce``: a scale's notebooks in order, through papermill.

The command is :func:`expertlib.run.reproduce.main`; this module only gives it its short name."""

import sys

from expertlib.run.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
