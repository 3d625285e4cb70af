"""The data the paper reads: the upstream label hierarchy, the tasks, and BiT's preprocessing.

``hierarchy`` (the label DAG and the experts' subtrees carved from it; the 48 released experts),
``transforms`` (BiT-HyperRule's crops and flips), ``batches`` and ``device`` (the batched data every training
reads), ``benchmark`` (the one view of upstream data and downstream tasks the pipeline has), the embedded
benchmark (``embedded*``, ``procedural*``, ``drawing``, ``sources``), ImageNet-21k and VTAB-1k on disk
(``ondisk``, ``index``, ``vtab``, ``tfrecords``, ``tfds_dir``, ``encoded``), few-shot versions of any task
(``fewshot``), a user's own images (``user_images``, ``folders``) and the on-disk test fixtures
(``fixtures``).

May import: utils.
"""
