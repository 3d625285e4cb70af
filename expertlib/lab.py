"""``python -m expertlib.lab``: JupyterLab at the repository root (``make lab``).

The command is :func:`expertlib.run.lab.main`; this module only gives it its short name."""

import sys

from expertlib.run.lab import main

if __name__ == "__main__":
    sys.exit(main())
