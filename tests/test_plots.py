import hashlib

import numpy as np
import pandas as pd

from expertlib import plots


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
    heat = plots.score_heatmap(rankings, "knn")
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
