"""Recovery and gain: how well each cost matrix finds the source classes' true parents, and each method's gain over
target-only fine-tuning as the source moves from related to unrelated (the benchmark :mod:`jtln.data.relatedness`).

The numbers only; :mod:`reproduce.recovery_tables` writes them as LaTeX and Markdown, :mod:`reproduce.figures` draws
them.  Pure functions of the seed records of a profile whose datasets know their
source classes' parents (a record's ``parents``): each record carries the
cost matrices prepared for its draw (``prepared_costs``), and the learned and
dynamic costs' records the matrix of their kept epoch.
"""

import numpy as np
from scipy import stats

from jtln.hparams import DEFAULTS
from jtln.methods import METHODS, method_order
from reproduce.prepare import COST_LABELS
from reproduce.stats import paired, t_interval
from reproduce.tables import per_seed

#: the cost matrices whose recovery is measured, key in a record -> label: each one the sweep prepares, and the one each
#: method that moves C ends with
COSTS = {**COST_LABELS, **{cls.final_cost: f"{cls.final_cost_label}, kept epoch" for cls in METHODS.values() if cls.final_cost}}
#: the methods whose heads' transport plan is measured: the ones that train with an OT loss (those with a cost matrix)
PLAN_METHODS = tuple(m for m in method_order(METHODS) if METHODS[m].cost)


def has_parents(records):
    return any(any(p is not None for p in r.get("parents") or ()) for r in records)


def cheapest_is_parent(C, parents):
    """``(hits, n)``: of the ``n`` source classes with a parent, how many have it as their cheapest target class (row argmin)."""
    hits = class_hits(C, parents)
    return sum(hits.values()), len(hits)


def parent_mass(plan, parents):
    """The share of the plan's mass in rows of source classes with a parent that goes to that parent (chance: 1 / L_t)."""
    plan = np.asarray(plan, float)
    rows = [i for i, p in enumerate(parents) if p is not None]
    total = plan[rows].sum()
    if not rows or total <= 0:
        raise ValueError("parent_mass needs a source class with a parent and a plan with mass in its rows")
    return float(sum(plan[i, parents[i]] for i in rows) / total)


def uniform_plan(C, lam=DEFAULTS.lam):
    """The entropic OT plan (Algorithm 1's, at the loss's default ``lam``) between uniform class marginals under ``C``."""
    import torch

    from jtln.ot import solve
    from jtln.sinkhorn import transport_plan

    C = torch.as_tensor(np.asarray(C, float))
    L_s, L_t = C.shape
    a, b = torch.full((1, L_s), 1.0 / L_s, dtype=C.dtype), torch.full((1, L_t), 1.0 / L_t, dtype=C.dtype)
    return transport_plan(solve(a, b, C, lam, tol=1e-7), C, lam)[0].numpy()


def class_hits(C, parents):
    """``{source class: 1 if its cheapest target class (row argmin) is its parent else 0}`` over the classes with a parent."""
    C = np.asarray(C, float)
    return {i: int(np.argmin(C[i]) == p) for i, p in enumerate(parents) if p is not None}


def class_masses(plan, parents):
    """``{source class: the share of its row's mass the plan sends to its parent}`` over the classes with a parent."""
    plan = np.asarray(plan, float)
    return {i: float(plan[i, p] / plan[i].sum()) for i, p in enumerate(parents) if p is not None}


#: resamples of the cluster bootstrap, and its seed (the intervals recompute exactly from relatedness.json)
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 9999, 0


def class_interval(per_class):
    """Mean over source classes of each class's share (its hits over seeds) and a 95% percentile bootstrap interval that
    resamples classes (scipy's ``bootstrap``): the unit is a source class, since the same classes recur in every seed."""
    shares = np.asarray([np.mean(v) for v in per_class.values()], float)
    if len(shares) < 2 or np.all(shares == shares[0]):
        return {"share": float(shares.mean()), "ci95": [float(shares.mean())] * 2, "classes": len(shares)}
    result = stats.bootstrap((shares,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                             rng=np.random.default_rng(BOOTSTRAP_SEED))
    interval = result.confidence_interval
    return {"share": float(shares.mean()), "ci95": [float(interval.low), float(interval.high)], "classes": len(shares)}


def _interval(values, bounds=(-np.inf, np.inf)):
    """Mean and 95% t-interval over seeds (:func:`reproduce.stats.t_interval`), clipped to ``bounds``, and their count."""
    mean, ci95 = t_interval(values, bounds=bounds)
    return {"mean": mean, "ci95": ci95, "n": len(values)}


def seed_costs(records, dataset):
    """``{cost key: {seed: (C, parents)}}`` of a dataset's seed records; empty where its source has no known relative."""
    found = {}
    for r in records:
        if r["dataset"] != dataset or not has_parents([r]):
            continue
        for key, C in (r.get("prepared_costs") or {}).items():
            found.setdefault(key, {})[r["seed"]] = (C, r["parents"])
        field = METHODS[r["method"]].final_cost if r["method"] in METHODS else None
        if field and r.get(field) is not None:
            found.setdefault(field, {})[r["seed"]] = (r[field], r["parents"])
    return found


def recovery(records, datasets):
    """Per dataset with known parents: each cost kind's recovery of the true parents, and each OT method's heads' plan on them.

    ``costs``: per cost kind, ``cheapest`` (per source class, its hits over
    seeds, ``per_class``; the mean of the classes' shares with a cluster
    bootstrap interval over classes, :func:`class_interval`; and the pooled
    ``hits``/``n``), ``plan_mass`` (the share of :func:`uniform_plan`'s mass
    on true pairs, mean and t-interval over seeds, with each seed's value,
    ``per_seed``, and its classes', ``per_seed_class``). ``heads``: per method
    of :data:`PLAN_METHODS`, the share of its mean transport plan between the
    heads on target test images (the record's ``mean_plan``) on true pairs,
    with each seed's value.  Chance for both shares: ``1 / L_t``.  Every
    interval recomputes from what is stored here.
    """
    out = {}
    for d in datasets:
        found = seed_costs(records, d)
        if not found:
            continue  # a setting without relatives has nothing to recover
        costs = {}
        for key in (k for k in COSTS if k in found):
            seeds = sorted(found[key])
            per_class = {}
            for s in seeds:
                for i, hit in class_hits(*found[key][s]).items():
                    per_class.setdefault(i, []).append(hit)
            hits, n = sum(map(sum, per_class.values())), sum(map(len, per_class.values()))
            plans = {s: uniform_plan(found[key][s][0]) for s in seeds}
            masses = [parent_mass(plans[s], found[key][s][1]) for s in seeds]
            costs[key] = {"cheapest": {**class_interval(per_class), "hits": hits, "n": n,
                                       "per_class": {str(i): v for i, v in sorted(per_class.items())}},
                          "plan_mass": {**_interval(masses, (0, 1)), "per_seed": masses,
                                        "per_seed_class": [{str(i): v for i, v in class_masses(plans[s], found[key][s][1]).items()}
                                                           for s in seeds]},
                          "seeds": seeds}
        heads = {}
        for m in PLAN_METHODS:
            runs = sorted((r for r in records if r["dataset"] == d and r["method"] == m and r.get("mean_plan")), key=lambda r: r["seed"])
            if runs:
                masses = [parent_mass(r["mean_plan"], r["parents"]) for r in runs]
                heads[m] = {**_interval(masses, (0, 1)), "per_seed": masses, "seeds": [r["seed"] for r in runs]}
        chance = 1 / len(next(r for r in records if r["dataset"] == d)["target_classes"])
        out[d] = {"costs": costs, "heads": heads, "chance": chance}
    return out


def gains(records, datasets, reference="target_only"):
    """``{method: {dataset: mean paired gain over reference and its 95% t-interval, in accuracy}}`` over the seeds both have
    (:func:`reproduce.stats.paired`)."""
    seeds = per_seed(records)
    out = {}
    for m in method_order({r["method"] for r in records} - {reference}):
        for d in datasets:
            a, b = seeds.get(d, {}).get(m, {}), seeds.get(d, {}).get(reference, {})
            common = sorted(set(a) & set(b))
            if common:
                result = paired([a[s] for s in common], [b[s] for s in common])
                out.setdefault(m, {})[d] = {"mean": result["mean_diff"], "ci95": result["ci95"], "n": result["n"]}
    return out


def trend(records, related, unrelated, reference="target_only"):
    """Does a method gain more where the source is related?  Per method, the paired difference over seeds of its gain over
    ``reference`` between the settings ``related`` and ``unrelated`` (:func:`reproduce.stats.paired`), with the two-sided
    paired t-test Holm-corrected over the methods (one family).  ``{method: {"mean", "ci95", "n", "p_t", "p_holm"}}``."""
    from reproduce.stats import holm

    seeds = per_seed(records)
    out = {}
    for m in method_order({r["method"] for r in records} - {reference}):
        cells = [seeds.get(d, {}) for d in (related, unrelated)]
        common = sorted(set.intersection(*(set(c.get(k, {})) for c in cells for k in (m, reference))))
        if len(common) < 2:
            continue
        gain = [[c[m][s] - c[reference][s] for s in common] for c in cells]
        result = paired(*gain)
        out[m] = {"mean": result["mean_diff"], "ci95": result["ci95"], "n": result["n"], "p_t": result["p_t"]}
    for m, p in zip(out, holm([c["p_t"] for c in out.values()])):
        out[m]["p_holm"] = p
    return out
