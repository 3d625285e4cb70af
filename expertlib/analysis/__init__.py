"""What the results say: paired statistics over tasks, the figures, and published numbers beside ours.

``stats`` (paired differences, sign-flip tests, bootstrap-t intervals, Holm and BH corrections, the noise
ceiling), ``plots`` (every figure and table, one method order, one label map), ``proxy_plots`` (the proxies'
figures) and ``published`` (published VTAB-1k numbers, always labelled as published).

May import: utils, datasets, models. Not train or run, which stand beside it on one floor.
"""
