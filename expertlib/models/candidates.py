"""A candidate: one network to score with a proxy or to transfer, whatever it is underneath.

B, the compute-matched control B+extra, an adapter expert, a full expert (and a converted released expert,
which is a full expert) are all a :class:`Candidate`: an expert of an
:class:`~expertlib.models.adapters.ExpertBank` (``expert=None`` is the bank's base model). A bare model
becomes one through :func:`from_model`. A candidate

- is a module with timm's contract: ``forward`` gives its upstream logits (what its own training optimised),
  ``forward_features`` its feature map, ``forward_head(x, pre_logits=True)`` the pooled features the kNN
  proxy embeds (:func:`~expertlib.models.resnet.pooled_features`),
- builds an independent ``transfer_net`` with a fresh zero-initialised head (what fine-tuning trains).

A candidate's id is its ``name`` (``base``, ``base+extra``, ``adapter:<expert>``, ``full:<expert>``,
``released:<expert>``, ``dat:<task>``): every table names candidates by it, in a ``model`` column, with
``kind`` and ``expert`` beside it (:func:`identify`), so no code parses an id. Nothing above this module asks
what kind of network a candidate is but through ``kind``. :func:`features_of` embeds one batch with many
candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
from torch import Tensor, nn

from expertlib.models.adapters import ExpertBank, FullExperts
from expertlib.models.resnet import ResNetV2, count_parameters, pooled_features

BASE, EXTRA = "base", "base+extra"
KINDS = ("generic", "adapter", "full", "released", "dat")
"""generic: B and B+extra; adapter, full: the experts trained here; released: the paper's converted experts;
dat: a Domain-Adaptive-Transfer model, B re-trained for one task (its ``task``)."""
EXPERT_KINDS = (
    "adapter",
    "released",
)  # the experts a proxy chooses among (full experts: adapter-vs-full only)


class Candidate(nn.Module):
    """Expert ``expert`` of ``bank`` (``None``: the bank's base model) under its id ``name``."""

    def __init__(self, name: str, bank: ExpertBank, expert: str | None = None, kind: str | None = None,
                 task: str | None = None) -> None:  # fmt: skip
        super().__init__()
        if expert is not None:
            bank._require(expert)  # an unknown expert fails here, naming the bank's experts
        self.name, self.bank, self.expert, self.task = name, bank, expert, task
        self.kind = kind or (bank.kind if expert is not None else "generic")
        if self.kind not in KINDS:
            raise ValueError(f"unknown candidate kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if (self.kind == "dat") != (task is not None):
            raise ValueError("a DAT model, and only one, names the task it was made for (task=...)")

    def __repr__(self) -> str:
        return f"Candidate({self.name!r}, kind={self.kind!r})"

    def forward_features(self, x: Tensor) -> Tensor:
        return self.bank.forward_features(x, self.expert)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool (a feature map, or take pooled features) and apply its own upstream head."""
        return self.bank.forward_head(x, self.expert, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        """Upstream logits (B's head for B; the expert's own head, over its subset, for an expert)."""
        return self.bank(x, self.expert)

    def transfer_net(self, num_classes: int) -> nn.Module:
        """An independent copy as one network with a fresh zero-initialised ``num_classes``-way head."""
        return self.bank.transfer_model(self.expert, num_classes)

    @property
    def num_upstream_classes(self) -> int:
        if self.expert is None:
            return self.bank.base.num_classes
        return self.bank.num_classes(self.expert)

    def training_module(self) -> nn.Module:
        """The smallest module whose forward gives these logits: a full expert's own network (so a training
        checkpoint does not hold the whole bank), else the candidate itself."""
        if self.expert is not None and isinstance(self.bank, FullExperts):
            return self.bank.experts[self.expert]
        return self

    def parameters_to_train(self) -> list[nn.Parameter]:
        """Make exactly this candidate's own parameters trainable (an expert's, or all of a base model)."""
        if self.expert is None:
            self.bank.requires_grad_(False)
            self.bank.base.requires_grad_(True)
            return list(self.bank.base.parameters())
        return self.bank.train_only(self.expert)

    def num_parameters(self, exclude_head: bool = True) -> int:
        if self.expert is None:
            return count_parameters(self.bank.base, exclude_head=exclude_head)
        return self.bank.num_expert_parameters(self.expert, exclude_head=exclude_head)


def from_model(
    model: ResNetV2, name: str = BASE, kind: str = "generic", task: str | None = None
) -> Candidate:
    """A bare model (B, B+extra, a DAT model for ``task``) as a candidate."""
    return Candidate(name, FullExperts(model), None, kind, task)


def from_bank(
    bank: ExpertBank, names: Iterable[str] | None = None, prefix: str | None = None, kind: str | None = None
) -> dict[str, Candidate]:
    """The experts of ``bank`` as candidates, named ``<prefix>:<expert>`` (prefix: the bank's kind; ``""``:
    named by expert alone). ``kind``: what tables call them (default: the bank's kind)."""
    prefix = bank.kind if prefix is None else prefix
    named = {(f"{prefix}:{n}" if prefix else n): n for n in (names or bank.expert_names)}
    return {name: Candidate(name, bank, n, kind) for name, n in named.items()}


def identify(table: pd.DataFrame, candidates: Mapping[str, Candidate]) -> pd.DataFrame:
    """``table`` with each row's candidate ``kind`` and ``expert`` (the bank's expert name; empty for B, B+extra
    and DAT models) right after its ``model`` id. An id that no candidate has is an error."""
    unknown = sorted(set(table["model"]) - set(candidates))
    if unknown:
        raise KeyError(
            f"no candidate has the id {', '.join(map(repr, unknown))}; known: {', '.join(candidates)}"
        )
    out = table.drop(columns=[c for c in ("kind", "expert") if c in table.columns])
    at = list(out.columns).index("model") + 1
    out.insert(at, "kind", [candidates[m].kind for m in out["model"]])
    out.insert(at + 1, "expert", [candidates[m].expert or "" for m in out["model"]])
    return out


def features_of(candidates: Sequence[Candidate], x: Tensor) -> dict[str, Tensor]:
    """Pooled features of ``x`` under every candidate. (Sharing work between the experts of one bank was
    measured to save nothing on the cpu scale: results/benchmarks/selection_cost.csv, 3.7 s shared against
    3.6 s apart, so each candidate runs its own forward.)"""
    return {c.name: pooled_features(c, x) for c in candidates}
