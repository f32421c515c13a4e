"""Planning and selection: which runs a profile asks for, and which search trial each cell keeps.

A *cell* is a (dataset, method, scarcity level).  For every cell whose
method trains:

1. **Search**: ``n_trials`` configurations — trial 0 the defaults, trial
   ``t`` drawn from :data:`jtln.hparams.SEARCH_SPACE` with a seed hashed from
   (dataset, method, level, t) — each trained on ``[search] draws`` *search
   draws* (labelled target images of their own, no test images), early
   stopped on their validation images and scored by the validation
   cross-entropy at the kept epoch, averaged over the draws: a few dozen
   validation images make a noisy score, and averaging k draws divides its
   variance by k.  A method that searches nothing still runs trial 0, which
   chooses its epoch count.
2. **Select** (:func:`select`): the trial with the lowest mean score (the
   lowest trial among ties), and its epoch count: the mean of its kept
   epochs over the search draws, rounded.
3. **Seeds** (:func:`plan_seeds`): the selected configuration refit on every
   labelled image of each seed's draw (its training and validation images
   together) for the selected epoch count, then tested once.
"""

from dataclasses import dataclass

from jtln.hparams import resolve, sample
from jtln.methods import METHODS
from jtln.models import LAYER_GROUP_RATES, backbone_rates
from jtln.seeding import stable_seed
from jtln.train import PROTOCOL
from reproduce.records import canonical, run_dir

TRIAL, SEED = "trial", "seed"


def search_draw(k):
    """The key of the ``k``-th search draw (its images are drawn like a seed's, under another name)."""
    return f"search{k}"


@dataclass(frozen=True)
class Job:
    """One run: ``role`` "trial" (search trial ``index`` on search draw ``repeat``) or "seed" (seed ``index``, on its own draw)."""

    profile: object
    dataset: str
    method: str
    level: object
    role: str
    index: int
    hparams: tuple  # (name, value) pairs of the resolved hyper-parameters
    runs: str
    data_root: str = None
    download: bool = False
    repeat: int = 0

    @property
    def hp(self):
        return resolve(dict(self.hparams))

    @property
    def draw_seed(self):
        return search_draw(self.repeat) if self.role == TRIAL else self.index

    @property
    def train_seed(self):
        """The seed of weights and batch order: the seed itself, or one hashed from the trial's cell and index."""
        if self.role == SEED:
            return self.index
        return stable_seed(TRIAL, search_key(self.profile, self.dataset), self.method, self.level, self.index, self.repeat) % 2**31

    @property
    def inputs(self):
        p = self.profile
        key = search_key(p, self.dataset)
        shared = {} if key == self.dataset else {"search_key": key}
        return canonical({"protocol": PROTOCOL, "data": p.data.identity(), "model": p.model.identity(), **p.run.identity(),
                          "dataset": self.dataset, **shared,
                          "method": self.method, "level": self.level, "role": self.role, "index": self.index,
                          "repeat": self.repeat, "hparams": dict(self.hparams)})

    @property
    def folder(self):
        return run_dir(self.runs, self.inputs)


def searched(method, profile):
    """The hyper-parameters ``method`` is tuned on: its registry entry's, less those the profile fixes and the layer-group
    learning rates that the profile's backbone lacks (:data:`jtln.models.BACKBONES` declares them)."""
    rates = backbone_rates(profile.model.backbone)
    return [name for name in METHODS[method].searches
            if name not in profile.hparams and (name not in LAYER_GROUP_RATES or name in rates)]


def search_key(profile, dataset):
    """What seeds a dataset's search: its name, or the target pool it shares with other groups (:func:`jtln.data.target_pool`),
    so that groups with the same target data search the same configurations with the same seeds (a method that ignores the
    source then gives the same runs on each)."""
    from jtln.data import target_pool

    return target_pool(profile.data.dataset, dataset) or dataset


def trial_hparams(profile, dataset, method, level, trial):
    """Trial 0: the defaults (with the profile's fixed values); trial t: a draw seeded by a hash of (:func:`search_key`, method,
    level, t)."""
    drawn = {} if trial == 0 else sample(searched(method, profile), stable_seed(search_key(profile, dataset), method, level, trial))
    return tuple(sorted(resolve({**profile.hparams, **drawn}).to_dict().items()))


def cells(profile):
    return [(d, m, level) for d in profile.data.groups for m in profile.run.methods for level in profile.data.levels]


def n_trials(profile, method):
    """``[search] n_trials`` for a method that searches something, 1 (the defaults) for one that only trains, 0 for one that does not."""
    if not METHODS[method].trains:
        return 0
    return profile.search.n_trials if searched(method, profile) else 1


def plan_trials(profile, runs, data_root=None, download=False):
    """Every search trial of the profile, each on every search draw."""
    return [Job(profile, d, m, level, TRIAL, t, trial_hparams(profile, d, m, level, t), str(runs), data_root, download, k)
            for d, m, level in cells(profile) for t in range(n_trials(profile, m)) for k in range(profile.search.draws)]


def select(trial_records):
    """``{(dataset, method, level): trial}``: the trial with the lowest validation cross-entropy averaged over its search draws.

    The lowest trial index wins among ties (the rule of :mod:`jtln.train`).
    A trial that diverged on any of its draws (its record's ``diverged``) is
    never selected; a cell whose every trial diverged has no selection
    (:func:`diverged_cells`).
    Each trial is summarised as ``{"trial", "hparams", "searched", "val_loss"
    and "val_accuracy" (means over the draws), "val_losses",
    "val_accuracies" and "best_epochs" (per draw), "epochs" (the epoch count
    of the refit: the mean kept epoch, rounded half up, at least 1)}``.
    """
    trials = {}
    for r in trial_records:
        trials.setdefault((r["dataset"], r["method"], r["level"], r["trial"]), []).append(r)
    best = {}
    for (d, m, level, t), runs in sorted(trials.items(), key=lambda kv: kv[0][3]):
        runs = sorted(runs, key=lambda r: r["inputs"].get("repeat", 0))
        if any(r.get("diverged") for r in runs):  # a configuration whose loss left the finite numbers: the worst score
            continue
        losses, accuracies = [r["val_loss"] for r in runs], [r["val_accuracy"] for r in runs]
        epochs = [r["best_epoch"] for r in runs]
        summary = {"trial": t, "hparams": runs[0]["hparams"], "searched": runs[0].get("searched", []), "val_losses": losses,
                   "val_accuracies": accuracies, "best_epochs": epochs, "epochs": max(1, int(sum(epochs) / len(epochs) + 0.5)),
                   "val_loss": sum(losses) / len(losses), "val_accuracy": sum(accuracies) / len(accuracies)}
        if (d, m, level) not in best or summary["val_loss"] < best[(d, m, level)]["val_loss"]:
            best[(d, m, level)] = summary
    return best


def diverged_cells(trial_records, selection):
    """``{(dataset, method, level): [(trial, hparams, message), ...]}``: the cells with no selection because every trial
    diverged, each with what it tried."""
    out = {}
    for r in sorted(trial_records, key=lambda r: (r["trial"], r["inputs"].get("repeat", 0))):
        cell = (r["dataset"], r["method"], r["level"])
        if cell not in selection and r.get("diverged"):
            tried = out.setdefault(cell, [])
            if r["trial"] not in [t for t, _, _ in tried]:
                tried.append((r["trial"], r["hparams"], r["diverged"]))
    return out


def refit_hparams(selected):
    """The hyper-parameters of a seed's refit: the selected trial's, with ``epochs`` its selected epoch count."""
    return tuple(sorted({**selected["hparams"], "epochs": selected["epochs"]}.items()))


def plan_seeds(profile, runs, selection, data_root=None, download=False):
    """Every seed's refit with its cell's selected configuration; cells whose search is unfinished are left out."""
    jobs = []
    for d, m, level in cells(profile):
        if n_trials(profile, m):
            if (d, m, level) not in selection:
                continue
            hparams = refit_hparams(selection[(d, m, level)])
        else:
            hparams = trial_hparams(profile, d, m, level, 0)
        jobs += [Job(profile, d, m, level, SEED, s, hparams, str(runs), data_root, download) for s in profile.run.seeds]
    return jobs
