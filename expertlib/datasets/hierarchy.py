"""Label hierarchies and the expert subsets carved from them.

The paper's experts are subtrees of ImageNet-21k's WordNet hierarchy ("entity > physical_entity > object >
whole > living_thing > organism > animal > chordate > vertebrate > mammal > placental > carnivore"): they
nest and overlap. :class:`LabelHierarchy` is a DAG (WordNet has nodes with two parents) with parsers for
ImageNet's ``wordnet.is_a.txt`` / ``words.txt`` and for a plain JSON description, plus the rules that pick
expert subtrees from per-class image counts.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class HierarchyError(ValueError):
    """Base class of hierarchy errors."""


class HierarchyCycleError(HierarchyError):
    """The parent/child relation has a cycle."""


class UnknownParentError(HierarchyError):
    """An edge names a parent that the hierarchy's node list does not hold."""


class UnknownNodeError(HierarchyError, KeyError):
    """A wnid or name that is not in the hierarchy."""

    def __str__(self) -> str:
        return str(self.args[0])


class EmptySubsetError(HierarchyError):
    """An expert subtree that holds no class with data."""


class LabelHierarchy:
    """A label DAG: nodes (ids such as WordNet ids), their display names, and parent -> child edges."""

    def __init__(self) -> None:
        self.children: dict[str, set[str]] = {}
        self.parents: dict[str, set[str]] = {}
        self.names: dict[str, str] = {}

    # -- building ---------------------------------------------------------------------------------------------
    def add_node(self, node: str, name: str | None = None) -> None:
        self.children.setdefault(node, set())
        self.parents.setdefault(node, set())
        if name is not None or node not in self.names:
            self.names[node] = name if name is not None else node

    def add_edge(self, parent: str, child: str) -> None:
        if parent == child:
            raise HierarchyCycleError(f"node {parent!r} is its own parent")
        self.add_node(parent)
        self.add_node(child)
        self.children[parent].add(child)
        self.parents[child].add(parent)

    def validate(self) -> LabelHierarchy:
        """Raise :class:`HierarchyCycleError` if the relation is not a DAG; return self."""
        order = self.topological_order()
        if len(order) != len(self.children):
            stuck = sorted(set(self.children) - set(order))
            raise HierarchyCycleError(f"the hierarchy has a cycle through {stuck[:6]}")
        return self

    def topological_order(self) -> list[str]:
        indeg = {n: len(p) for n, p in self.parents.items()}
        queue = deque(sorted(n for n, d in indeg.items() if d == 0))
        order = []
        while queue:
            n = queue.popleft()
            order.append(n)
            for c in sorted(self.children[n]):
                indeg[c] -= 1
                if indeg[c] == 0:
                    queue.append(c)
        return order

    # -- parsers ----------------------------------------------------------------------------------------------
    @classmethod
    def from_edges(
        cls, edges: Iterable[tuple[str, str]], names: Mapping[str, str] | None = None
    ) -> LabelHierarchy:
        h = cls()
        if names is not None:
            for node, name in names.items():
                h.add_node(node, name)
        for parent, child in edges:
            if names is not None:
                for n, role in ((parent, "parent"), (child, "child")):
                    if n not in names:
                        err = UnknownParentError if role == "parent" else UnknownNodeError
                        raise err(
                            f"edge {parent} -> {child} names {role} {n!r}, which is not in the node list"
                        )
            h.add_edge(parent, child)
        return h.validate()

    @classmethod
    def from_wordnet(cls, is_a: str | os.PathLike, words: str | os.PathLike | None = None) -> LabelHierarchy:
        """Parse ImageNet's ``wordnet.is_a.txt`` (``parent child`` wnid pairs) and ``words.txt``
        (``wnid<TAB>lemma, lemma``). With ``words``, every wnid in ``is_a`` must appear there."""
        edges = []
        for lineno, line in enumerate(_read_lines(is_a), 1):
            parts = line.split()
            if len(parts) != 2:
                raise HierarchyError(f"{is_a}:{lineno}: expected 'parent_wnid child_wnid', got {line!r}")
            edges.append((parts[0], parts[1]))
        names = None
        if words is not None:
            names = {}
            for lineno, line in enumerate(_read_lines(words), 1):
                wnid, _, lemmas = line.partition("\t")
                if not lemmas:
                    raise HierarchyError(f"{words}:{lineno}: expected 'wnid<TAB>lemmas', got {line!r}")
                names[wnid.strip()] = lemmas.strip()
        return cls.from_edges(edges, names)

    @classmethod
    def from_json(cls, source: str | os.PathLike | Mapping) -> LabelHierarchy:
        """A JSON mapping ``{"nodes": {id: {"name": str, "parents": [id, ...]}}}`` (roots have no parents).
        A plain ``{child: parent}`` or ``{child: [parents]}`` mapping is accepted too."""
        data = json.loads(Path(source).read_text()) if not isinstance(source, Mapping) else source
        if "nodes" in data:
            nodes = data["nodes"]
            names = {k: v.get("name", k) for k, v in nodes.items()}
            edges = [(p, k) for k, v in nodes.items() for p in v.get("parents", [])]
            return cls.from_edges(edges, names)
        edges = []
        for child, parent in data.items():
            for p in [parent] if isinstance(parent, str) else parent:
                edges.append((p, child))
        return cls.from_edges(edges)

    def to_json(self) -> dict:
        return {
            "nodes": {
                n: {"name": self.names[n], "parents": sorted(self.parents[n])}
                for n in self.topological_order()
            }
        }

    # -- queries ----------------------------------------------------------------------------------------------
    def __contains__(self, node: str) -> bool:
        return node in self.children

    def _check(self, node: str) -> None:
        if node not in self.children:
            raise UnknownNodeError(
                f"unknown node {node!r}: not in this hierarchy of {len(self.children)} nodes"
            )

    @property
    def roots(self) -> list[str]:
        return sorted(n for n, p in self.parents.items() if not p)

    @property
    def leaves(self) -> list[str]:
        return sorted(n for n, c in self.children.items() if not c)

    def _reach(self, node: str, edges: dict[str, set[str]], include_self: bool) -> set[str]:
        """Every node reachable from ``node`` along ``edges`` (children or parents)."""
        self._check(node)
        seen, stack = set(), [node]
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen | {node} if include_self else seen

    def descendants(self, node: str, include_self: bool = True) -> set[str]:
        return self._reach(node, self.children, include_self)

    def ancestors(self, node: str, include_self: bool = False) -> set[str]:
        return self._reach(node, self.parents, include_self)

    def depth(self, node: str) -> int:
        """Length of the shortest path from a root (roots have depth 0)."""
        self._check(node)
        depth, frontier = 0, {node}
        while frontier:
            if any(not self.parents[n] for n in frontier):
                return depth
            frontier = {p for n in frontier for p in self.parents[n]}
            depth += 1
        return depth

    def resolve(self, name_or_id: str, counts: Mapping[str, int] | None = None) -> str:
        """A node id from an id or a lemma (``'living_thing'`` matches ``'living thing'``). An ambiguous lemma
        (WordNet's 'plant' is both flora and factory) resolves to the sense with the most images under it,
        else the shallowest."""
        if name_or_id in self.children:
            return name_or_id
        want = name_or_id.replace("_", " ").lower()
        matches = [
            n for n, lemmas in self.names.items() if want in (s.strip().lower() for s in lemmas.split(","))
        ]
        if not matches:
            raise UnknownNodeError(f"no node has id or lemma {name_or_id!r}")
        if len(matches) == 1:
            return matches[0]
        if counts is not None:
            return max(matches, key=lambda n: (self.subtree_count(n, counts), -self.depth(n), n))
        return min(matches, key=lambda n: (self.depth(n), n))

    def subtree_classes(self, node: str, classes: Iterable[str]) -> list[str]:
        """The members of ``classes`` (labels that have data) inside ``node``'s subtree, in input order."""
        under = self.descendants(node)
        return [c for c in classes if c in under]

    def subtree_count(self, node: str, counts: Mapping[str, int]) -> int:
        under = self.descendants(node)
        return sum(v for k, v in counts.items() if k in under)

    def expert_classes(self, node: str, classes: Sequence[str]) -> list[str]:
        """Like :meth:`subtree_classes` but raises :class:`EmptySubsetError` for an empty subset."""
        members = self.subtree_classes(node, classes)
        if not members:
            raise EmptySubsetError(
                f"expert {self.names.get(node, node)!r} ({node}) has no class with data under it; "
                "drop it from the expert list or add data"
            )
        return members

    # -- carving experts --------------------------------------------------------------------------------------
    def candidate_experts(self, counts: Mapping[str, int]) -> pd.DataFrame:
        """Every internal node with data under it: node, name, depth, number of classes and images."""
        for c in counts:
            self._check(c)
        rows = []
        for n in self.topological_order():
            if not self.children[n]:
                continue
            under = self.descendants(n)
            classes = [c for c in counts if c in under and counts[c] > 0]
            if classes:
                rows.append(
                    {
                        "node": n,
                        "name": self.names[n],
                        "depth": self.depth(n),
                        "classes": len(classes),
                        "images": int(sum(counts[c] for c in classes)),
                    }
                )
        return pd.DataFrame(rows, columns=["node", "name", "depth", "classes", "images"])

    def select_experts(self, counts: Mapping[str, int], rule: ExpertRule) -> list[str]:
        """Pick expert subtrees by ``rule`` (nested and overlapping subtrees allowed, as the paper's are).
        Candidates with identical class sets keep only the deepest one (the others add no new expert)."""
        cand = self.candidate_experts(counts)
        cand = cand[
            (cand.images >= rule.min_images) & (cand.depth >= rule.min_depth) & (cand.depth <= rule.max_depth)
        ]
        if not rule.include_roots:
            cand = cand[cand.depth > 0]
        seen: dict[frozenset, str] = {}
        for row in cand.sort_values(["depth", "node"], ascending=[False, True]).itertuples():
            key = frozenset(self.subtree_classes(row.node, counts))
            seen.setdefault(key, row.node)
        cand = cand[cand.node.isin(set(seen.values()))]
        cand = cand.sort_values(["images", "node"], ascending=[False, True])
        if rule.max_experts is not None:
            cand = cand.head(rule.max_experts)
        return list(cand.node)


@dataclass(frozen=True)
class ExpertRule:
    """How experts are chosen from a hierarchy: enough images, a depth band, at most ``max_experts``."""

    min_images: int = 1
    min_depth: int = 0
    max_depth: int = 100
    max_experts: int | None = None
    include_roots: bool = False


# The 48 ImageNet-21k experts released with the paper (TF Hub collection experts/bit), by WordNet lemma.
PAPER_EXPERTS: tuple[str, ...] = (
    "abstraction", "angiosperm", "animal", "arthropod", "artifact", "bird", "carnivore", "chordate",
    "clothing", "commodity", "consumer_goods", "container", "conveyance", "covering", "device", "entity",
    "equipment", "flower", "food", "foodstuff", "herb", "implement", "instrument", "instrumentality",
    "invertebrate", "living_thing", "mammal", "matter", "natural_object", "nutrient", "nutriment", "object",
    "organism", "part", "physical_entity", "placental", "plant", "relation", "solid", "spermatophyte",
    "structure", "substance", "tree", "vascular_plant", "vehicle", "vertebrate", "whole", "woody_plant",
)  # fmt: skip


RELEASED_EXPERTS_FILE = Path(__file__).resolve().parents[1] / "data" / "released_experts.json"


@dataclass(frozen=True)
class ReleasedExpert:
    """One of the 48 released experts: its WordNet id and its classes as indices into BiT-M's 21,843-way head."""

    name: str
    wnid: str
    lemmas: str
    gloss: str
    classes: np.ndarray  # sorted int64 indices into BiT-M's class order


@functools.cache
def released_experts() -> dict[str, ReleasedExpert]:
    """The 48 released experts, by name, from ``expertlib/data/released_experts.json`` (derived once from
    WordNet 3.0 and BiT-M's class order by ``tools/derive_expert_classes.py``: explicit ids, no lemma lookup)."""
    doc = json.loads(RELEASED_EXPERTS_FILE.read_text())
    out = {}
    for name, e in doc["experts"].items():
        bits = np.unpackbits(np.frombuffer(base64.b64decode(e["classes_bits"]), np.uint8))[
            : doc["num_classes"]
        ]
        out[name] = ReleasedExpert(
            name, e["wnid"], e["lemmas"], e["gloss"], np.flatnonzero(bits).astype(np.int64)
        )
    return out


def released_expert_ids() -> dict[str, str]:
    """name -> WordNet id of the 48 released experts (``food`` and ``nutrient`` are different synsets)."""
    return {n: e.wnid for n, e in released_experts().items()}


def bit_m_classes() -> list[str]:
    """BiT-M's 21,843 ImageNet-21k classes in its head's order (timm's list), checked against the order the
    released experts' class indices were derived in."""
    import hashlib

    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / "imagenet21k_goog_synsets.txt"
    classes = path.read_text().split()
    want = json.loads(RELEASED_EXPERTS_FILE.read_text())["class_order_sha256"]
    if hashlib.sha256("\n".join(classes).encode()).hexdigest() != want:
        raise ValueError(f"{path} is not the class order the released experts' classes were derived in")
    return classes


def multi_label_targets(
    hierarchy: LabelHierarchy, classes: Sequence[str], with_ancestors: bool
) -> list[list[int]]:
    """For each class, the indices in ``classes`` it activates: itself and, optionally, its ancestors that
    are themselves labels (ImageNet-21k has labels at internal nodes)."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for c in classes:
        nodes = hierarchy.ancestors(c, include_self=True) if with_ancestors else {c}
        out.append(sorted(index[n] for n in nodes if n in index))
    return out


def _read_lines(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: ImageNet's WordNet files (wordnet.is_a.txt, words.txt) come with the "
            "ImageNet-21k release; place them next to the image folders"
        )
    return [ln.rstrip("\n") for ln in path.read_text().splitlines() if ln.strip()]
