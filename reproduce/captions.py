"""The tables' captions: what each table holds and how it was computed, from the profile and the facts of the run.

The statistics themselves are :mod:`reproduce.stats`'; a caption names them
and the protocol that produced the numbers, so that a table read alone says
what was selected on what.
"""

from jtln.hparams import DEFAULTS
from jtln.methods import METHODS, display_name, method_order
from reproduce.paper import DEFAULT_PLAYS
from reproduce.stats import ALPHA, MIN_SEEDS, POWER


def protocol(profile):
    level, search = profile.data.table2_level, profile.search
    return (f"{level} labelled target images per class, each seed its own draw; every seed searched for itself (DomainBed's "
            f"protocol, so the spread over seeds includes the search's): {search.n_trials} random trials trained on the seed's "
            "training part and scored by the validation cross-entropy of its validation part, which also chose the epoch count "
            f"(early stopping, patience {search.patience} epochs); the seed's run then refit the selected configuration on all "
            "its labelled images, training and validation, for that epoch count, and was tested once")


def table2(profile, records, paper, incomplete):
    n_seeds = len({r["seed"] for r in records})
    spread = "one seed" if n_seeds == 1 else f"mean $\\pm$ std (ddof=1) over {n_seeds} seeds"
    caption = (f"Target test accuracy, {spread} ({profile.description}); {protocol(profile)}; in bold among the paper's methods, by a rule "
               "fixed before any run (jtln's code, not the numbers, chose it): the best mean and every method not significantly "
               "below it (paired t-test, Holm over the rivals), none if that is every method; "
               "below the rules, methods beyond the paper (same search, selection and seeds) and a reference outside the paper")
    if paper:
        caption += "; columns marked (paper) are the values published in the paper's Table 2"
    if not profile.model.pretrained:
        caption += "; the backbone's weights are random, not pretrained ([model] pretrained = false)"
    warned = sum(bool(r.get("warnings")) for r in records)
    if warned:
        caption += f"; {warned} of {len(records)} runs warned while training (their warnings in the records)"
    for m in method_order({r["method"] for r in records}):  # what a method says of its own runs (Method.table_note)
        note = METHODS[m].table_note([r for r in records if r["method"] == m])
        if note:
            caption += f"; {note}"
    return caption + incomplete


def hparams(profile, incomplete):
    return ("Selected hyper-parameters: each seed's search trial with the lowest validation cross-entropy (trial 0: the "
            f"defaults; {profile.search.n_trials} trials per seed, each seed its own draws of the search space), summarised over "
            "the seeds per dataset, method and level: how often each trial won (trial$\\times$seeds), the median validation "
            "cross-entropy, and the refit's epoch count (the trial's kept epoch) and each searched value as median [min, max] "
            "over seeds (a choice: value$\\times$seeds)" + incomplete)


def stats(incomplete):
    return ("Exploratory: every pair of the paper's methods once per dataset, paired over seeds: mean accuracy difference A$-$B "
            "with 95\\% CI (t distribution), paired t-test $p_t$ and its Holm correction over the dataset's pairs, probability of "
            "improvement $P(A>B)$ over seeds with an exact binomial 95\\% CI, the smallest difference the seeds detect with "
            f"{POWER * 100:g}\\% power at $\\alpha={ALPHA:g}$ (MDE), and one exact McNemar test pooling the seeds (stratified by seed: "
            "the test images' discordant pairs summed, binomial under the null), uncorrected. No Wilcoxon signed-rank test: "
            "with 6 seeds its smallest two-sided p is 0.031, which no Holm correction over several pairs lets reject" + incomplete)


def claims(groups, incomplete, plays=DEFAULT_PLAYS, verdicts=()):
    from reproduce.paper import roles as paper_roles

    roles = ", ".join(f"{d} plays {column}'s role" for d, column in paper_roles(groups, plays))
    if not roles:
        return ("No claim of the paper is tested: no dataset of this profile plays one of the paper's columns (a dataset "
                "of your own does so only where the profile's [data] plays says which)")
    tested = [c for c in verdicts if "verdict_log_odds" in c]
    differ = [c for c in tested if c["verdict"] != c["verdict_log_odds"]]
    sensitivity = ("with the paper's effect as a log-odds difference instead, every verdict is the same" if not differ else
                   f"with the paper's effect as a log-odds difference instead, {len(differ)} verdict(s) differ: " + "; ".join(
                       f"{c['claim']} on {c['dataset']}: {c['verdict_log_odds']}" for c in differ))
    level = tested[0]["power_level"] if tested else ALPHA
    return (f"The paper's claims ({roles}), tested on test accuracy paired over seeds. The paper's effect is carried over as "
            "the share of the worse method's errors that the better removed in the paper's column, applied to our worse "
            "method's errors (Margin here; the paper's absolute difference beside it for reference). Two tests per claim: "
            "the two-sided paired t-test and a one-sided paired t-test of a difference as large as the margin "
            "(statsmodels ttest\\_mean); all of them, on every dataset, one Holm family "
            f"at $\\alpha={ALPHA:g}$, so a verdict's family-wise error is at most {ALPHA:g}. Supported / contradicted: the two-sided "
            "test rejects in / against the claimed direction; paper's effect ruled out: the margin test rejects, i.e. an effect "
            f"removing as large a share of errors as the paper's is unlikely here; too few seeds: fewer than {MIN_SEEDS}; at "
            "chance: either method's test predictions are not above chance (exact binomial test), so no verdict. Power: the "
            "two-sided test's power against the "
            f"margin at Holm's first-step level ($\\alpha/m = {level:.4f}$, conservative); {sensitivity}" + incomplete)


def beyond(rivals, incomplete):
    return ("Beyond the paper: each new method against " + ", ".join(display_name(m) for m in rivals) + ", paired over seeds; "
            "mean accuracy difference A$-$B with 95\\% CI, paired t-test $p_t$, Holm-corrected within each dataset "
            f"($\\alpha={ALPHA:g}$). Supported / contradicted: significant in / against the direction A beats B; too few seeds "
            f"(below {MIN_SEEDS}) or at chance (a method's predictions not above chance): no verdict" + incomplete)


def recovery(incomplete):
    return ("How well each cost matrix finds each source class's true parent (the target class it is a sub-class of, by "
            "construction); over the tested seeds' draws at Table 2's level. Cheapest = parent: source classes with a parent whose "
            "cheapest target class is it (hits/trials pooled over seeds), the mean over source classes of each class's share of seeds, "
            "and a 95\\% percentile bootstrap interval resampling source classes (the unit: the same classes recur in every seed). "
            "Plan mass on parents: the share of the mass of children's rows that the entropic plan between "
            f"uniform class marginals (Algorithm 1, $\\lambda={DEFAULTS.lam:g}$) sends to their parents, mean and 95\\% t-interval "
            "over seeds "
            "(clipped to [0, 1]). "
            "Heads' plan: the same share of each OT method's mean transport plan between its heads on the target test images. "
            "Learned and dynamic costs: at the epoch each run kept. Chance: one over the number of target classes" + incomplete)


def gain(incomplete):
    return ("Each method's gain over target-only fine-tuning at each setting of the relatedness dial, in accuracy points: the "
            "mean paired difference over seeds with its 95\\% t-interval" + incomplete)
