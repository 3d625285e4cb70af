"""Upstream training and fine-tuning: how B, the experts and every transfer are trained and evaluated.

``training`` (the one training loop, with exact resume and DDP), ``schedules`` (BiT-HyperRule and the upstream
schedules, pure functions), ``batching`` (each step's batch, deterministic from seed and step), ``evaluation``
(the one evaluation loop) and ``stacked`` with ``stacked_batches`` (many small fine-tunes as one stacked
model).

May import: utils, datasets, models. Not analysis or run, which stand beside it on one floor.
"""
