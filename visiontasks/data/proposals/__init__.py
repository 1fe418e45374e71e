"""Region proposals for R-CNN and Fast R-CNN: selective search, its on-disk cache, recall."""

from .cache import ProposalCache, ProposalCacheWarning
from .recall import best_overlaps, proposal_recall
from .selective_search import SelectiveSearchSettings, selective_search

__all__ = [
    "ProposalCache",
    "ProposalCacheWarning",
    "SelectiveSearchSettings",
    "best_overlaps",
    "proposal_recall",
    "selective_search",
]
