"""The paper's pipeline as resumable steps, one module per notebook, over a shared base that no step owns.

The base: ``workspace`` (paths, :func:`~expertlib.pipeline.workspace.cached`, provenance), ``tables`` (the on-disk
formats), ``recipes`` (scale -> training configs), ``pricing``, ``experts``, ``inputs``, ``models``, ``dat``,
``finetunes`` (the fine-tunes' job list), ``analysis`` (the analysis plan), ``methods``, ``hypotheses``,
``summary``; above it ``compute_plan`` and ``session`` (every notebook's start). The steps: ``data`` (01),
``upstream`` (02 B and B+extra, 03 experts), ``scoring`` (04, the selection step), ``transfer`` (05),
``report`` (06), ``your_task`` (07); none imports another. ``torchrun`` is the command line of the long stages.
Every step writes under ``results/<scale>/`` and reuses what is there.
"""

from expertlib.pipeline.workspace import MissingStepError, Workspace, cached, provenance

__all__ = ["MissingStepError", "Workspace", "cached", "provenance"]
