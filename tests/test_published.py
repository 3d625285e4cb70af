import numpy as np
import pandas as pd

from expertlib.analysis.published import beside_published, published_table, split_caveat


def test_published_rows_are_labelled_and_ours_converted_to_percent():
    vtab = pd.DataFrame({"method": ["base"], "label": ["B (generic)"], "natural": [0.5], "structured": [0.25],
                         "mean": [0.375]})  # fmt: skip
    both = beside_published(vtab, "paper")
    ours = both[both.who == "ours (paper scale)"].iloc[0]
    assert ours["natural"] == 50.0 and np.isnan(ours["specialized"]) and ours["mean"] == 37.5
    pub = both[both.who == "published"].set_index("model")
    assert pub.loc["BiT-M R152x4", "mean"] == 73.51 and pub.loc["Experts (I21k+JFT), paper", "mean"] == 72.3
    assert (published_table().source.str.len() > 0).all()


def test_our_rows_say_where_the_splits_are_not_vtab_s():
    """Tasks from folders or torchvision are marked "splits not VTAB's"; TFDS shards of another version (other
    example counts) "TFDS version differs"; VTAB's own splits carry no caveat."""
    tasks = {"resisc45": (False, None), "dsprites_location": (True, False), "cifar100": (True, True)}
    caveat = split_caveat(tasks)
    assert caveat == "splits not VTAB's (resisc45); TFDS version differs (dsprites_location)"
    assert split_caveat({"cifar100": (True, True)}) == ""
    vtab = pd.DataFrame({"method": ["knn"], "label": ["kNN pick (paper)"], "mean": [0.7]})
    both = beside_published(vtab, "released", caveat)
    ours = both[both.who.str.startswith("ours")]
    assert ours.who.tolist() == [f"ours (released scale; {caveat})"] and caveat in ours.source.iloc[0]
    assert set(both.who) - set(ours.who) == {"published"}
