"""``python -m expertlib.convert``: the paper's released expert SavedModels into expertlib files.

The command is :func:`expertlib.models.convert.main`; this module only gives it its short name."""

import sys

from expertlib.models.convert import main

if __name__ == "__main__":
    sys.exit(main())
