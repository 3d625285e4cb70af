import hashlib

import numpy as np
import pandas as pd

from expertlib.analysis import plots, proxy_plots


def _digests(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_the_same_figure_saves_to_the_same_bytes(tmp_path):
    digests = []
    for i in range(2):
        fig, ax = plots.plt.subplots()
        ax.plot([1, 3, 2])
        ax.set_title("same figure")
        digests.append(_digests(plots.save_figure(fig, tmp_path / f"f{i}")))
    assert digests[0] == digests[1]
    svg = (tmp_path / "f0.svg").read_text()
    assert "<dc:date>" not in svg


def test_new_figures_draw_their_data():
    metrics = pd.DataFrame({"step": [10, 20, 30], "loss": [2.0, 1.5, 1.2], "lr": [0.1, 0.1, 0.01]})
    fig = plots.training_curve(metrics, "B")
    assert fig.axes[0].lines[0].get_ydata().tolist() == [2.0, 1.5, 1.2]
    acc = pd.DataFrame(
        {"domain": ["a", "b", "a", "b"], "accuracy": [0.5, 0.6, 0.7, 0.8], "model": ["B", "B", "X", "X"]}
    )
    assert len(plots.domain_accuracy(acc).axes[0].patches) >= 4
    rankings = pd.DataFrame({"task": ["t", "t", "u", "u"], "model": ["a", "b", "a", "b"], "proxy": "knn",
                             "score": [0.1, 0.9, 0.8, 0.2]})  # fmt: skip
    heat = proxy_plots.score_heatmap(rankings, "knn")
    boxed = [p for p in heat.axes[0].patches if isinstance(p, plots.plt.Rectangle) and not p.get_fill()]
    assert sorted((int(p.get_x()), int(p.get_y())) for p in boxed) == [
        (0, 1),
        (1, 0),
    ]  # t: b (row 1), u: a (row 0)
    both = pd.DataFrame({"who": ["ours (x)", "published"], "model": ["B", "BiT"], "natural": [50.0, np.nan],
                         "specialized": [60.0, 80.0], "structured": [40.0, 60.0], "mean": [50.0, 70.0]})  # fmt: skip
    fig = plots.published_comparison(both, "t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["ours: B", "published: BiT"]


def _texts(fig) -> list[str]:
    """Every word a reader sees: titles, axis labels, tick labels, legend entries, annotations."""
    out = [t.get_text() for t in fig.findobj(plots.plt.Text)]
    return [t for t in out if t]


def test_a_legend_over_the_data_is_caught(legend_overlaps):
    fig, ax = plots.plt.subplots()
    ax.bar([0, 1, 2], [1, 1, 1], label="bars")
    ax.legend(loc="center")  # on top of the middle bar
    assert legend_overlaps(fig)
    fig, ax = plots.plt.subplots()
    ax.bar([0, 1, 2], [1, 1, 1], label="bars")
    plots._legend_outside(ax)
    assert legend_overlaps(fig) == []


def _methods_frame():
    rng = np.random.default_rng(0)
    rows = []
    for i, (task, group) in enumerate([("t1", "natural"), ("t2", "structured"), ("t3", "specialized")]):
        for m in plots.METHOD_ORDER:
            rows.append({"task": task, "group": group, "metric": "finetune", "method": m, "mean": 0.5 + 0.1 * i,
                         "sd": 0.01, "n": 5})  # fmt: skip
    diffs = []
    for level, names in (
        ("task", ["t1", "t2", "t3"]),
        ("group", ["natural", "specialized", "structured"]),
        ("all", ["all"]),
    ):
        for n in names:
            for m in plots.METHOD_ORDER[1:]:
                d = rng.normal(0, 0.01)
                group = {"t1": "natural", "t2": "structured", "t3": "specialized"}.get(n, n)
                diffs.append({"level": level, "name": n, "group": group, "method": m, "minus_base": d,
                              "ci_low": d - 0.01, "ci_high": d + 0.01, "tasks": 1 if level == "task" else 3, "seeds": 5})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(diffs)


def test_every_report_figure_keeps_legends_off_the_data_and_says_what_error_bars_are(legend_overlaps):
    """Every figure the report (and notebooks 02-03) builds, from tables shaped as the pipeline writes them."""
    summary, diffs = _methods_frame()
    figs = {
        "bars": plots.transfer_bars(summary, "finetune", "t"),
        "minus_base": plots.minus_base_plot(diffs, "t"),
    }
    spec = pd.DataFrame({"expert": ["a", "a", "b", "b"] * 2, "model": ["adapter_expert", "base"] * 4,
                         "region": ["own"] * 4 + ["rest"] * 4, "knn": np.linspace(0.3, 0.9, 8)})  # fmt: skip
    figs["specialisation"] = plots.specialisation_plot(spec)
    cost = pd.DataFrame({"method": ["knn selection", "domain selection", "fine-tune all (oracle)"],
                         "seconds": [4.7, 0.3, 30.0], "minus_base": [0.01, 0.008, -0.001],
                         "ci_low": [0.003, -0.001, -0.012], "ci_high": [0.037, 0.026, 0.009]})  # fmt: skip
    figs["cost"] = plots.cost_plot(cost, "why the oracle sits there")
    figs["adapter_vs_full"] = plots.adapter_vs_full(pd.DataFrame({"expert": ["glyph", "glyph", "photo"], "kind": [
        "adapter", "full", "adapter"], "parameters": [7000, 45000, 6500], "accuracy": [0.88, 0.9, 0.6]}))  # fmt: skip
    gains = pd.DataFrame([{"regime": r, "metric": m, "method": k, "minus_base": 0.01, "ci_low": 0.0, "ci_high": 0.02}
                          for r in ("5-shot", "1k") for m in ("finetune", "linear") for k in ("knn", "random")])  # fmt: skip
    figs["regimes"] = plots.regime_gains(gains, full="1k\n(1,000 images)")
    figs["sweep"] = plots.schedule_plot(pd.DataFrame({"task": ["t"] * 4, "steps": [25, 50, 25, 50], "accuracy": [
        0.3, 0.5, 0.35, 0.5], "model": ["B", "B", "matching adapter expert", "matching adapter expert"]}))  # fmt: skip
    figs["domains"] = plots.domain_accuracy(pd.DataFrame({"domain": ["a", "b"] * 2, "accuracy": [0.5, 0.6, 0.7, 0.8],
                                                          "model": ["base", "base", "base+extra", "base+extra"]}))  # fmt: skip
    assert "1k\n(1,000 images)" in [t.get_text() for t in figs["regimes"].axes[0].get_xticklabels()]
    assert any("why the oracle" in t for t in _texts(figs["cost"]))
    for name, fig in figs.items():
        assert legend_overlaps(fig) == [], name
        assert not {"adapter_expert", "base", "base+extra", "knn"} & set(_texts(fig)), (
            name
        )  # readable names only
    assert any("error bars" in t.lower() for t in _texts(figs["bars"]))
    assert any("bootstrap-t" in t for t in _texts(figs["minus_base"]))
    # the headline: tasks grouped natural, specialized, structured, as the bar chart orders them
    ticks = [t.get_text().split("\n")[0] for t in figs["minus_base"].axes[0].get_xticklabels()]
    assert (
        ticks
        == ["t1", "t3", "t2"]
        == [t.get_text().split("\n")[0] for t in figs["bars"].axes[0].get_xticklabels()]
    )


def test_figures_are_released_from_pyplot_so_a_notebook_shows_each_once():
    """The inline backend shows every figure pyplot still holds at a cell's end; a figure also returned by the
    cell would be shown twice."""
    before = set(plots.plt.get_fignums())
    summary, diffs = _methods_frame()
    plots.transfer_bars(summary, "finetune", "t")
    plots.minus_base_plot(diffs, "t")
    assert set(plots.plt.get_fignums()) == before


def test_proxy_scatter_has_no_empty_panel_and_no_overlapping_labels():
    rng = np.random.default_rng(0)
    tasks = [f"task{i}" for i in range(7)]
    points = pd.DataFrame([{"task": t, "model": f"adapter:expert_{j}", "proxy": "knn", "score": rng.random(),
                            "accuracy": rng.random()} for t in tasks for j in range(5)])  # fmt: skip
    fig = proxy_plots.proxy_scatter(points, "knn", tasks[::-1])
    assert (
        len(fig.axes) == 7
        and fig.axes[0].get_subplotspec().get_gridspec().ncols == 4
        and [a.get_title().split(":")[0] for a in fig.axes] == tasks[::-1]
    )
    assert any("Kendall's tau:" in t for t in _texts(fig))  # tau explained where it is shown
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    for ax in fig.axes:
        boxes = [t.get_window_extent(canvas.get_renderer()) for t in ax.texts]
        assert all(t.get_text() and not t.get_text().startswith("adapter:") for t in ax.texts)
        overlaps = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
        assert overlaps == 0, (ax.get_title(), overlaps)
