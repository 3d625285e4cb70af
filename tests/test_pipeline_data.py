import pytest

from expertlib.datasets.folders import DatasetNotFoundError
from expertlib.pipeline import Workspace
from expertlib.pipeline import data as D


def test_paper_scale_raises_the_data_error_naming_the_layout(tmp_path):
    ws = Workspace.create("paper", tmp_path / "r", tmp_path / "nodata", progress=False)
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path}/nodata/imagenet21k not found.*<wnid>"):
        D.load_benchmark(ws)


def test_experts_plan_and_figures(smoke, capsys):
    ws, bench = smoke
    experts = D.choose_experts(ws, bench)
    assert len(experts) == ws.scale.expert_rule.max_experts and all(n == experts[n] for n in experts)
    assert D.full_experts(ws, bench) == {"digit": "digit"}
    p = D.print_plan(ws, bench)
    assert p["experts"] == len(experts) and f"{len(experts)} adapter experts" in capsys.readouterr().out
    summary = D.write_data_summary(ws, bench)
    assert (ws.results_dir / "data_summary.csv").is_file() and set(summary.kind) == {
        "upstream_domain",
        "task",
    }
    fig = D.sample_figure(ws, bench)
    assert len(fig.axes) == len(bench.domain_names) + len(
        ws.scale.tasks
    )  # few-shot tasks hold the same images
    assert (ws.path("figures", "samples.png")).is_file()


def test_expert_names_are_lemmas():
    class H:
        names = {"n00015388": "animal, animate being, beast", "n1": "living thing"}

    class B:
        hierarchy = H()

    assert D.expert_name(B(), "n00015388") == "animal" and D.expert_name(B(), "n1") == "living_thing"
