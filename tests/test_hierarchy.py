import json

import pytest

from expertlib.datasets.hierarchy import (
    PAPER_EXPERTS,
    EmptySubsetError,
    ExpertRule,
    HierarchyCycleError,
    LabelHierarchy,
    UnknownNodeError,
    UnknownParentError,
    multi_label_targets,
)

IS_A = """n00001740 n00001930
n00001930 n00002684
n00002684 n00015388
n00002684 n00021939
n00015388 n01471682
n01471682 n01503061
n01471682 n01861778
n01503061 n01530575
n01861778 n02084071
n00021939 n03575240
n00021939 n03956922
n00017222 n00019613
"""
WORDS = """n00001740\tentity
n00001930\tphysical entity
n00002684\tobject, physical object
n00015388\tanimal, animate being, beast
n01471682\tvertebrate, craniate
n01503061\tbird
n01530575\tbrambling, Fringilla montifringilla
n01861778\tmammal, mammalian
n02084071\tdog, domestic dog
n00021939\tartifact, artefact
n03575240\tinstrumentality, instrumentation
n03956922\tplant, industrial plant, works
n00017222\tplant, flora, plant life
n00019613\tsubstance
"""


@pytest.fixture
def wordnet(tmp_path):
    (tmp_path / "wordnet.is_a.txt").write_text(IS_A)
    (tmp_path / "words.txt").write_text(WORDS)
    return LabelHierarchy.from_wordnet(tmp_path / "wordnet.is_a.txt", tmp_path / "words.txt")


def test_wordnet_parse_and_queries(wordnet):
    h = wordnet
    assert set(h.roots) == {"n00001740", "n00017222"}
    assert h.depth("n02084071") == 6
    assert "n00015388" in h.ancestors("n02084071")
    assert h.descendants("n01471682") == {"n01471682", "n01503061", "n01530575", "n01861778", "n02084071"}
    assert h.resolve("physical_entity") == "n00001930"
    assert h.resolve("dog") == "n02084071"


def test_ambiguous_lemma_resolves_by_images_then_depth(wordnet):
    counts = {"n00019613": 5, "n03956922": 50}
    assert wordnet.resolve("plant", counts) == "n03956922"  # the factory sense has more images here
    assert wordnet.resolve("plant", {"n00019613": 50, "n03956922": 5}) == "n00017222"
    assert wordnet.resolve("plant") == "n00017222"  # shallowest without counts


def test_errors_are_named(tmp_path, wordnet):
    with pytest.raises(UnknownNodeError, match="'n99999999'"):
        wordnet.descendants("n99999999")
    with pytest.raises(UnknownNodeError, match="no node has id or lemma 'unicorn'"):
        wordnet.resolve("unicorn")
    (tmp_path / "cyc.txt").write_text("a b\nb c\nc a\n")
    with pytest.raises(HierarchyCycleError, match="cycle"):
        LabelHierarchy.from_wordnet(tmp_path / "cyc.txt")
    (tmp_path / "w2.txt").write_text("n00001930\tphysical entity\nn00002684\tobject\n")
    (tmp_path / "is_a2.txt").write_text("n00001740 n00001930\n")
    with pytest.raises(UnknownParentError, match="n00001740"):
        LabelHierarchy.from_wordnet(tmp_path / "is_a2.txt", tmp_path / "w2.txt")
    with pytest.raises(EmptySubsetError, match="substance"):
        wordnet.expert_classes("n00019613", ["n02084071", "n01530575"])
    with pytest.raises(FileNotFoundError, match="wordnet.is_a.txt"):
        LabelHierarchy.from_wordnet(tmp_path / "nope" / "wordnet.is_a.txt")


def test_json_formats_round_trip(tmp_path):
    h = LabelHierarchy.from_json(
        {"dog": "mammal", "cat": "mammal", "mammal": "animal", "bat": ["mammal", "flyer"]}
    )
    assert set(h.parents["bat"]) == {"mammal", "flyer"}  # a DAG, as WordNet needs
    path = tmp_path / "h.json"
    path.write_text(json.dumps(h.to_json()))
    h2 = LabelHierarchy.from_json(path)
    assert h2.to_json() == h.to_json()
    with pytest.raises(UnknownParentError, match="'ghost'"):
        LabelHierarchy.from_json({"nodes": {"a": {"parents": ["ghost"]}}})


def test_candidate_and_selected_experts_nest(wordnet):
    counts = {"n01530575": 100, "n02084071": 300, "n03575240": 50, "n03956922": 20}
    cand = wordnet.candidate_experts(counts)
    row = cand.set_index("node").loc["n00015388"]
    assert (row.classes, row.images) == (2, 400)
    chosen = wordnet.select_experts(counts, ExpertRule(min_images=100))
    # animal and vertebrate hold the same classes: only the deeper one stays; nested experts are allowed.
    assert "n01471682" in chosen and "n00015388" not in chosen
    assert "n01861778" in chosen and "n00002684" in chosen
    assert "n00001740" not in chosen  # roots excluded by default
    assert chosen == ["n00002684", "n01471682", "n01861778", "n01503061"]  # by images, largest first
    assert wordnet.select_experts(counts, ExpertRule(min_images=100, max_experts=2)) == chosen[:2]


def test_multi_label_targets(wordnet):
    classes = ["n01471682", "n02084071", "n01861778"]
    assert multi_label_targets(wordnet, classes, with_ancestors=True)[1] == [0, 1, 2]
    assert multi_label_targets(wordnet, classes, with_ancestors=False)[1] == [1]


def test_paper_expert_list():
    assert len(PAPER_EXPERTS) == 48 and len(set(PAPER_EXPERTS)) == 48
    assert {"animal", "entity", "woody_plant"} <= set(PAPER_EXPERTS)


# -- the 48 released experts' class sets (expertlib/data/released_experts.json) --------------------------------
def test_released_experts_have_explicit_distinct_ids_and_nested_class_sets():
    from expertlib.datasets.hierarchy import (
        PAPER_EXPERTS,
        bit_m_classes,
        released_expert_ids,
        released_experts,
    )

    experts = released_experts()
    classes = bit_m_classes()
    assert len(classes) == 21843 and classes == sorted(classes)
    assert list(experts) == list(PAPER_EXPERTS)
    ids = released_expert_ids()
    assert len(set(ids.values())) == 48  # no two experts share a synset
    assert ids["food"] != ids["nutrient"] and ids["nutrient"] == "n00021265" and ids["food"] == "n07555863"
    sets = {n: set(e.classes.tolist()) for n, e in experts.items()}
    assert sets["entity"] == set(range(21843))  # the root covers every class
    for small, big in [("bird", "vertebrate"), ("vertebrate", "chordate"), ("chordate", "animal"),
                       ("animal", "organism"), ("carnivore", "placental"), ("placental", "mammal"),
                       ("vehicle", "conveyance"), ("conveyance", "instrumentality"), ("instrumentality", "artifact"),
                       ("artifact", "whole"), ("whole", "object"), ("object", "physical_entity"),
                       ("tree", "woody_plant"), ("flower", "angiosperm"),
                       ("nutriment", "nutrient")]:  # fmt: skip
        assert sets[small] < sets[big], (small, big)
    assert not sets["animal"] & sets["plant"] and not sets["bird"] & sets["mammal"]
    # counts as derived from WordNet 3.0 (tools/derive_expert_classes.py)
    assert {n: len(s) for n, s in sets.items() if n in ("animal", "bird", "artifact", "object")} == {
        "animal": 3822, "bird": 856, "artifact": 7896, "object": 19721}  # fmt: skip
    # each expert's own synset is a class of BiT-M when ImageNet-21k labels it (e.g. bird, n01503061)
    assert classes.index("n01503061") in sets["bird"]
