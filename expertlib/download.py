"""``python -m expertlib.download``: a scale's public inputs fetched into the data root and checked.

The command is :func:`expertlib.pipeline.download.main`; this module only gives it its short name."""

import sys

from expertlib.pipeline.download import main

if __name__ == "__main__":
    sys.exit(main())
