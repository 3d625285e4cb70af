"""What every notebook reads: the scale's benchmark (built, written as a fixture, or read from ``data_root``),
the released scale's downloads (each missing one named, with where to get it), and the data summary table."""

from __future__ import annotations

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline.experts import RELEASED_BANK, released_names
from expertlib.pipeline.workspace import Workspace
from expertlib.utils.runtime import atomic_write_csv


def load_benchmark(ws: Workspace) -> Benchmark:
    """The scale's benchmark at its resolution: the embedded one (built or read from ``data_root/embedded``)
    or ImageNet-21k + VTAB-1k from ``data_root`` (missing data raises an error naming the path and layout)."""
    sc = ws.scale
    if sc.data.embedded is not None:
        from expertlib.datasets.embedded import build

        bench = build(sc.data.embedded, cache_dir=ws.data_root / "embedded", progress=ws.progress)
    else:
        from expertlib.datasets.ondisk import FolderBenchmark, VtabBenchmark

        root = ws.dataset_root
        from expertlib.datasets.fixtures import fixture_current

        if sc.data.writes_fixture and not fixture_current(root):
            import shutil

            from expertlib.datasets.fixtures import write_paper_fixture, write_released_fixture

            if (root / "COMPLETE").is_file():  # a fixture an older version wrote: ours to replace
                shutil.rmtree(root)

            if sc.trains_upstream:
                write_paper_fixture(root)
            else:
                write_released_fixture(root, sc.upstream.weights or "", sc.data.released_experts or "")
        if sc.trains_upstream:
            bench = FolderBenchmark(root, sc.data.tasks, heldout_per_class=sc.data.heldout_per_class,
                                    task_resolution=sc.data.task_resolution, index_dir=ws.results_dir / "cache",
                                    hyperrule=sc.transfer.hyperrule)  # fmt: skip
        else:
            check_downloads(ws)  # B and the experts, named with where to get them, before any compute
            bench = VtabBenchmark(root, sc.data.tasks, task_resolution=sc.data.task_resolution,
                                  hyperrule=sc.transfer.hyperrule)  # fmt: skip
    bench.resolution = (sc.data.precrop, sc.data.crop)
    missing = [t for t in sc.data.tasks if t not in bench.task_names]
    if missing:
        raise KeyError(f"scale {sc.name!r} needs tasks {missing}, which benchmark {bench.name!r} lacks")
    if sc.study.few_shot:
        from expertlib.datasets.fewshot import FewShotBenchmark

        bench = FewShotBenchmark(bench, sc.study.few_shot)
    return bench


class MissingDownloadError(FileNotFoundError):
    """A public download the ``released`` scale needs is not under ``data_root``; the message says where to get
    it."""


WHERE_B = ("BiT-M R50x1's released weights, BiT-M-R50x1.npz (about 100 MB), from the big_transfer repository's "
           "download links (google-research/big_transfer README)")  # fmt: skip


WHERE_EXPERTS = ("the paper's experts, TF Hub / Kaggle Models handle google/experts/bit/r50x1/in21k/<name>/1 (a "
                 "~90 MB .tar.gz SavedModel each); unpack each into <folder>/<name>/ or keep the archives, then the "
                 "notebooks convert them once (or run python -m expertlib.convert <folder> --out "
                 "results/<scale>/models/released_experts.safetensors --base <BiT-M-R50x1.npz>)")  # fmt: skip


def check_downloads(ws: Workspace) -> None:
    """The ``released`` scale's downloads besides VTAB-1k (whose loaders name a missing task): B's ``.npz``, and
    each expert's SavedModel unless the converted bank is already in ``results/<scale>/models/``. Every missing
    one is named, with where to get it, in one error."""
    sc, root = ws.scale, ws.dataset_root
    problems = []
    weights = root / (sc.upstream.weights or "")
    if not sc.upstream.weights or not weights.is_file():
        problems.append(f"B's weights {weights} not found: {WHERE_B}")
    if not ws.path("models", RELEASED_BANK).exists():
        folder = root / (sc.data.released_experts or "released_experts")
        from expertlib.models.convert import ConversionError, sources

        try:
            found = sources([folder]) if folder.is_dir() else {}
        except ConversionError as e:
            found, problems = {}, [*problems, str(e)]
        missing = [e for e in released_names(sc) if e not in found]
        if missing:
            problems.append(
                f"{len(missing)} of the {len(released_names(sc))} released experts are not in {folder}: "
                f"{', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}; download "
                + WHERE_EXPERTS.replace("<folder>", str(folder))
            )
    if problems:
        raise MissingDownloadError(
            f"scale {sc.name!r} needs downloads that {root} lacks:\n- " + "\n- ".join(problems)
        )


def write_data_summary(
    ws: Workspace, bench: Benchmark, accuracy: dict[str, float] | None = None
) -> pd.DataFrame:
    """``results/<scale>/data_summary.csv``: domains and tasks (and, once known, B's fine-tuned accuracy)."""
    frame = bench.summary(accuracy)
    atomic_write_csv(ws.results_dir / "data_summary.csv", frame)
    return frame
