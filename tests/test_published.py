import numpy as np
import pandas as pd

from expertlib.published import beside_published, published_table


def test_published_rows_are_labelled_and_ours_converted_to_percent():
    vtab = pd.DataFrame({"method": ["base"], "label": ["B (generic)"], "natural": [0.5], "structured": [0.25],
                         "mean": [0.375]})  # fmt: skip
    both = beside_published(vtab, "paper")
    ours = both[both.who == "ours (paper scale)"].iloc[0]
    assert ours["natural"] == 50.0 and np.isnan(ours["specialized"]) and ours["mean"] == 37.5
    pub = both[both.who == "published"].set_index("model")
    assert pub.loc["BiT-M R152x4", "mean"] == 73.51 and pub.loc["Experts (I21k+JFT), paper", "mean"] == 72.3
    assert (published_table().source.str.len() > 0).all()
