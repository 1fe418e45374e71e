"""VGG configurations A-E: total parameters of our registered networks vs the paper's Table 2."""

from __future__ import annotations

from ._count import classifier_on_meta, n_params
from ._registry import Budget, ClaimResult, claim, verdict_of

# Table 2 of Simonyan & Zisserman, as quoted in 001:414 (millions).
TABLE2 = {"A": ("vgg11", 133), "A-LRN": ("vgg11_lrn", 133), "B": ("vgg13", 133), "C": ("vgg16_c", 134),
          "D": ("vgg16", 138), "E": ("vgg19", 144)}


@claim("vgg_totals")
def vgg_totals(budget: Budget) -> ClaimResult:
    """VGG's configurations have A/A-LRN 133, B 133, C 134, D 138, E 144 million parameters (Table 2 as the
    notes quote it: one column for A,A-LRN).

    Measures: parameters of the registered vgg11, vgg11_lrn, vgg13, vgg16_c, vgg16, vgg19 with the 1000-class
    head
    Paper: Simonyan & Zisserman 2015, Table 2
    Notes: seeds/001_ad955026876a85d8.txt:411-414
    """
    rows, checks = [], []
    for config, (name, claimed) in TABLE2.items():
        n = n_params(classifier_on_meta(name))
        rows.append({"config": config, "backbone": name, "params": n, "millions": round(n / 1e6),
                     "notes": claimed, "match": "yes" if round(n / 1e6) == claimed else "NO"})
        checks.append(round(n / 1e6) == claimed)
    d = rows[4]
    return ClaimResult(rows, verdict_of(checks),
                       "rounded to millions: " + ", ".join(f"{r['config']} {r['millions']}" for r in rows)
                       + f"; VGG-16 (D) exactly {d['params']:,}")
