"""Expert selection: the cheap proxies that score experts on a task's images, and the choice they make.

``proxies`` (the registry: kNN, domain prediction, linear probe, LogME, LEEP, NCE, H-score, ...),
``transferability`` (PACTran, SFDA and the other later metrics), ``probes`` (many linear probes fitted at
once), ``prior`` (what past transfers say, and its hybrid with a proxy), ``selection`` (candidates meet
proxies: features, rankings, tau, regret, FLOPs), ``zoo`` (any model as a rankable candidate) and
``rank_table`` (what ``python -m expertlib.rank`` prints and writes).

May import: every wing below it (utils, datasets, models, train, analysis, run).
"""
