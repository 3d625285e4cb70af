"""Process plumbing, none of it the paper's: the machinery every other wing stands on.

``runtime`` (devices, compilation, seeding, atomic writes, the repository root), ``distributed`` (this
process's rank under torchrun), ``runlock`` (one run per results folder), ``parallel`` (a pool of
single-threaded workers), ``jobs`` with ``claims`` (a job list shared over every rank, each job taken with a
claim file) and ``fetch`` (files over HTTP, resumable and checked).

May import: nothing of expertlib outside this wing (the bottom floor).
"""
