import pytest

from expertlib.run.presets import SCALES, get_scale


def test_scales_exist_and_unknown_is_clear():
    assert set(SCALES) == {
        "smoke",
        "cpu",
        "gpu",
        "gpu-smoke",
        "paper",
        "paper-smoke",
        "released",
        "released-smoke",
    }
    assert get_scale("cpu").data.embedded is not None and get_scale("paper").upstream.arch == "R50x1"
    ps, paper = get_scale("paper-smoke"), get_scale("paper")
    # paper-smoke runs the paper's code paths: same data kind, architecture, loss, schedule and expert rule
    assert (ps.data.source, ps.upstream.arch, ps.upstream.loss, ps.upstream.schedule) == (
        paper.data.source,
        paper.upstream.arch,
        "sigmoid",
        "bit",
    )
    assert (
        ps.data.writes_fixture
        and not paper.data.writes_fixture
        and paper.upstream.weights == "BiT-M-R50x1.npz"
    )
    # the released scales: the paper's downstream half, the same tasks and transfer recipe shape, nothing upstream
    rs, rel = get_scale("released-smoke"), get_scale("released")
    assert not rel.trains_upstream and not rs.trains_upstream and paper.trains_upstream
    assert (
        rel.data.tasks == paper.data.tasks
        and rel.upstream.arch == "R50x1"
        and rel.data.task_resolution == "hyperrule"
    )
    assert (
        rel.study.oracle_on == "val200"
        and rel.study.random_experts > 0
        and rel.study.oracle_pool > 0
        and rel.expert.names == paper.expert.names
    )
    assert (rs.data.source, rs.data.released_experts, rs.data.writes_fixture) == (
        "vtab",
        "released_experts",
        True,
    )
    with pytest.raises(ValueError, match="did you mean 'smoke'"):
        get_scale("smoek")


def test_the_paper_scales_fine_tune_with_bit_hyperrule_as_published():
    """Batch 512 at lr 0.003, 500 steps for VTAB-1k, resolution by image area; upstream trainings at 224 px."""
    for name in ("paper", "released"):
        sc = get_scale(name)
        assert (sc.transfer.batch, sc.transfer.lrs, sc.transfer.steps) == (512, (0.003,), (500,))
        assert sc.data.task_resolution == "hyperrule" and sc.runtime.micro_batch == 64  # 8 passes of 64
    assert (get_scale("paper").data.precrop, get_scale("paper").data.crop) == (256, 224)
    assert get_scale("cpu").transfer.batch == 32  # the embedded scales keep their own recipes


def test_the_gpu_scale_is_the_cpu_experiment_on_19_tasks_at_20_seeds_with_stacked_fine_tunes():
    from expertlib.datasets.embedded_tasks import CORE_TASKS, VTAB_LIKE_TASKS

    cpu, gpu = get_scale("cpu"), get_scale("gpu")
    assert (
        gpu.data.tasks == VTAB_LIKE_TASKS
        and len(gpu.data.tasks) == 19
        and set(CORE_TASKS) < set(gpu.data.tasks)
    )
    assert gpu.study.seeds == 20 and gpu.study.few_shot == cpu.study.few_shot and gpu.study.dat_accuracy
    assert (gpu.upstream, gpu.expert, gpu.transfer) == (
        cpu.upstream,
        cpu.expert,
        cpu.transfer,
    )  # the same recipes
    assert gpu.runtime.stack_finetunes == 64 and cpu.runtime.stack_finetunes == 0
    assert (
        get_scale("cpu").data.embedded.key() == "223dc624dd50"
    )  # the cpu scale's data unchanged by the widening


def test_every_smoke_scales_results_are_git_ignored_and_the_cpu_runs_are_not():
    """A smoke run (`SCALE=gpu-smoke make reproduce`, the tests) leaves git clean; the committed cpu run stays
    tracked."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    smoke = [name for name in SCALES if name.endswith("smoke")]
    assert {"smoke", "gpu-smoke", "paper-smoke", "released-smoke"} <= set(smoke)
    paths = [f"results/{name}/notebooks/01_data.ipynb" for name in smoke]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths, "results/cpu/summary.json"], cwd=repo,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    assert ignored == paths
