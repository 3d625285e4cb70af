"""``python -m expertlib.launch``: a scale's stages as SLURM jobs through submitit, or on this machine.

The command is :func:`expertlib.run.launch.main`; this module only gives it its short name."""

import sys

from expertlib.run.launch import main

if __name__ == "__main__":
    sys.exit(main())
