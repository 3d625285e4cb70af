"""tools/gpu_scale_progress.py: the gpu scale's wall time when it finished, else an extrapolation said to be one."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from gpu_scale_progress import progress  # noqa: E402

from expertlib.run.reproduce import notebooks  # noqa: E402


def test_a_finished_run_gives_its_wall_time_and_a_cut_run_an_extrapolation(tmp_path):
    run = tmp_path / "gpu"
    (run / "notebooks").mkdir(parents=True)
    (run / "tables").mkdir()
    assert (
        progress(tmp_path, 5.0)["how"] == "the fine-tunes had not started: no extrapolation from their pace"
    )
    pd.DataFrame({"stage": ["fine-tunes (test)", "total"], "jobs": [400, 400]}).to_csv(
        run / "tables" / "plan.csv"
    )
    (run / "jobs" / "transfer").mkdir(parents=True)
    for i in range(100):
        (run / "jobs" / "transfer" / f"{i}.json").write_text("{}")
    for nb in notebooks()[:4]:
        (run / "notebooks" / nb.name).write_text("{}")
    cut = progress(tmp_path, 90.0)
    assert not cut["complete"] and cut["fine_tunes_done"] == 100 and cut["fine_tunes_planned"] == 400
    assert cut["extrapolated_wall_seconds"] == 360.0 and "extrapolated from a subset" in cut["how"]
    rated = progress(tmp_path, 90.0, rate=20.0)  # + 300 fine-tunes at a measured 20 per second
    assert (
        rated["extrapolated_from_rates_seconds"] == 105.0
        and "extrapolated from measured rates" in rated["how_from_rates"]
    )
    for nb in notebooks():
        (run / "notebooks" / nb.name).write_text("{}")
    assert progress(tmp_path, 300.0) == {**progress(tmp_path, 300.0), "complete": True, "wall_seconds": 300.0}
