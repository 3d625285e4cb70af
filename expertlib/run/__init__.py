"""Scales and their runs: what an experiment is set to, and the commands that run its notebooks.

``scale`` (what a scale is: data, upstream, expert, selection, transfer, study, runtime), ``presets`` (the
scales themselves, as data), ``parameters`` (a notebook's parameters, read and checked), ``reproduce`` (the
notebooks in order, through papermill), ``launch`` (the stages on a SLURM cluster) and ``lab`` (JupyterLab at
the repository root).

May import: utils, datasets, models. Not train or analysis, which stand beside it on one floor: a run reaches
the training only through the notebooks it starts.
"""
