"""The paper's pipeline as resumable steps, one module per notebook, over a shared base that no step owns.

The base: ``workspace`` (paths, :func:`~expertlib.pipeline.workspace.cached`, provenance), ``tables`` (the
on-disk formats), ``recipes`` (scale -> training configs), ``pricing``, ``experts``, ``inputs``, ``models``,
``dat``, ``finetunes`` (the fine-tunes' job list), ``analysis`` (the analysis plan), ``methods``, ``quality``,
``hypotheses``, ``summary``; above it ``compute_plan``, ``forecast`` and ``session`` (every notebook's start).
The steps: ``data`` (01), ``upstream`` (02 B and B+extra, 03 experts), ``scoring`` (04, the selection step),
``transfer`` (05), ``report`` (06), ``your_task`` (07); none imports another. The commands over the whole
pipeline: ``torchrun`` (the long stages), ``docs`` (the stated numbers) and ``download`` (a scale's inputs,
then notebook 01's data check). Every step writes under ``results/<scale>/`` and reuses what is there.

May import: every wing (utils, datasets, models, train, analysis, run, select) and ``expertlib.rank``. Nothing
in the library imports the pipeline; only the short commands (``python -m expertlib.download``) do.
"""

from expertlib.pipeline.workspace import MissingStepError, Workspace, cached, provenance

__all__ = ["MissingStepError", "Workspace", "cached", "provenance"]
