"""The paper's pipeline as resumable steps, one module per notebook.

``workspace`` (paths, :func:`~expertlib.pipeline.workspace.cached`, provenance) and ``recipes`` (scale ->
training configs) sit under ``data`` (01), ``upstream`` (02 B and B+extra, 03 experts), ``selection`` (04),
``transfer`` (05) and ``report`` (06). Every step writes under ``results/<scale>/`` and reuses what is there.
"""

from expertlib.pipeline.workspace import MissingStepError, Workspace, cached, provenance

__all__ = ["MissingStepError", "Workspace", "cached", "provenance"]
