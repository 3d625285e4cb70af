import pytest

from expertlib.datasets.folders import DatasetNotFoundError
from expertlib.pipeline import Workspace
from expertlib.pipeline import data as D
from expertlib.pipeline import experts as E
from expertlib.pipeline import inputs as I
from expertlib.pipeline import session as SE


def test_paper_scale_raises_the_data_error_naming_the_layout(tmp_path):
    ws = Workspace.create("paper", tmp_path / "r", tmp_path / "nodata", progress=False)
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path}/nodata/imagenet21k not found.*<wnid>"):
        I.load_benchmark(ws)


def test_experts_plan_and_figures(smoke, capsys):
    ws, bench = smoke
    experts = E.choose_experts(ws, bench)
    assert len(experts) == ws.scale.expert.rule.max_experts and all(n == experts[n] for n in experts)
    assert E.full_experts(ws, bench) == {"digit": "digit"}
    p = SE.print_plan(ws, bench)
    banner = capsys.readouterr().out
    assert p["experts"] == len(experts) and f"{len(experts)} adapter experts" in banner
    assert "CPU time: seconds" in banner and "GPU-hours (" not in banner  # a CPU scale on a CPU: no GPU price
    summary = I.write_data_summary(ws, bench)
    assert (ws.results_dir / "data_summary.csv").is_file() and set(summary.kind) == {
        "upstream_domain",
        "task",
    }
    fig = D.sample_figure(ws, bench)
    assert len(fig.axes) == len(bench.domain_names) + len(
        ws.scale.data.tasks
    )  # few-shot tasks hold the same images
    assert (ws.path("figures", "samples.png")).is_file()


def test_expert_names_are_lemmas():
    class H:
        names = {"n00015388": "animal, animate being, beast", "n1": "living thing"}

    class B:
        hierarchy = H()

    assert E.expert_name(B(), "n00015388") == "animal" and E.expert_name(B(), "n1") == "living_thing"


def test_released_scale_names_missing_downloads_before_any_compute(tmp_path):
    """A data root with VTAB but without B's .npz and one expert: one error names both, with where to get them."""
    import pytest

    from expertlib.datasets.fixtures import write_released_fixture
    from expertlib.pipeline.inputs import MissingDownloadError
    from expertlib.pipeline.session import start

    root = write_released_fixture(tmp_path / "d" / "released-smoke", "bit_m_fixture.npz", "released_experts")
    (root / "bit_m_fixture.npz").unlink()
    import shutil

    shutil.rmtree(root / "released_experts" / "food")
    with pytest.raises(MissingDownloadError) as e:
        start("released-smoke", str(tmp_path / "r"), str(tmp_path / "d"), progress=False)
    text = str(e.value)
    assert "bit_m_fixture.npz not found" in text and "BiT-M-R50x1.npz" in text
    assert "1 of the 3 released experts are not in" in text and "food" in text
    assert "google/experts/bit/r50x1/in21k/<name>/1" in text
    assert not (tmp_path / "r" / "released-smoke" / "models" / "released_experts.safetensors").exists()


def test_released_scale_trains_nothing_and_says_where_its_models_come_from(tmp_path):
    import pytest

    from expertlib.pipeline import models as M
    from expertlib.pipeline import upstream as U
    from expertlib.pipeline.session import start
    from expertlib.run.reproduce import notebooks, run

    ws, bench = start("released-smoke", str(tmp_path / "r"), str(tmp_path / "d"), progress=False)
    for step in (lambda: U.train_generic(ws, bench), lambda: M.load_generic(ws),
                 lambda: U.train_experts(ws, bench, None, "adapter")):  # fmt: skip
        with pytest.raises(
            M.NothingToTrainError, match="trains nothing upstream.*python -m expertlib.convert"
        ):
            step()
    with pytest.raises(Exception, match="reads no upstream images"):
        bench.upstream_data("train")
    assert run("released-smoke", results_dir=str(tmp_path / "r"), only=["02", "03"]) == []
    assert len(notebooks()) == 7


def test_the_banner_prices_cpu_scales_in_cpu_time_and_gpu_scales_in_gpu_hours():
    from types import SimpleNamespace

    from expertlib.run.presets import get_scale

    on = lambda name, device: SimpleNamespace(device=device, scale=get_scale(name))  # noqa: E731
    assert SE.runs_on_cpu(on("cpu", "cpu")) and SE.runs_on_cpu(on("smoke", "cpu"))
    assert not SE.runs_on_cpu(on("cpu", "cuda")) and not SE.runs_on_cpu(on("paper", "cpu"))
    assert not SE.runs_on_cpu(on("released", "cpu")) and not SE.runs_on_cpu(on("gpu", "cpu"))
