"""Planning and selection: which runs a profile asks for, and which search trial each seed keeps.

A *cell* is a (dataset, method, scarcity level).  Every seed of a cell whose
method trains searches for itself (DomainBed's protocol, Gulrajani and
Lopez-Paz, ICLR 2021), so that the spread over seeds holds the search's
variance too:

1. **Search**: the seed's labelled images are split into its training and
   validation part; ``n_trials`` configurations — trial 0 the defaults, trial
   ``t`` drawn from :data:`jtln.hparams.SEARCH_SPACE` with a seed hashed from
   (dataset, method, level, seed, t) — each train on the training part and
   are early stopped on the validation part (the kept epoch: the lowest
   validation cross-entropy; a trial stops after ``[search] patience`` epochs
   without a lower one).  No test image is seen.  A method that searches
   nothing still runs trial 0, which chooses its epoch count.
2. **Select** (:func:`select`): per seed, the trial with the lowest
   validation cross-entropy (the lowest trial among ties), and its kept epoch.
3. **Refit** (:func:`plan_seeds`): the seed's selected configuration trained
   on all its labelled images (training and validation part) for the
   selected epoch count, then tested once.
"""

from dataclasses import dataclass

from jtln.hparams import resolve, sample
from jtln.methods import METHODS
from jtln.models import LAYER_GROUP_RATES, backbone_rates
from jtln.seeding import stable_seed
from jtln.train import PROTOCOL
from reproduce.records import canonical, run_dir

TRIAL, SEED = "trial", "seed"


@dataclass(frozen=True)
class Job:
    """One run: ``role`` "trial" (search trial ``index`` of seed ``seed``, on the seed's training part) or "seed" (the refit of
    seed ``index`` on all its labelled images)."""

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
    seed: int = None  # a trial's seed (a refit's is its index)

    @property
    def hp(self):
        return resolve(dict(self.hparams))

    @property
    def draw_seed(self):
        """The seed whose draw the run trains on."""
        return self.seed if self.role == TRIAL else self.index

    @property
    def refit(self):
        """Whether the run trains on all its seed's labelled images (a refit) or on its training part (a search trial)."""
        return self.role == SEED

    @property
    def train_seed(self):
        """The seed of weights and batch order: the seed itself, or one hashed from the trial's cell and index."""
        if self.role == SEED:
            return self.index
        return stable_seed(TRIAL, search_key(self.profile, self.dataset), self.method, self.level, self.seed, self.index) % 2**31

    @property
    def inputs(self):
        p = self.profile
        key = search_key(p, self.dataset)
        shared = {} if key == self.dataset else {"search_key": key}
        stopping = {} if self.refit else {"seed": self.seed, "patience": p.search.patience}
        return canonical({"protocol": PROTOCOL, "data": p.data.identity(), "model": p.model.identity(), **p.run.identity(),
                          "dataset": self.dataset, **shared,
                          "method": self.method, "level": self.level, "role": self.role, "index": self.index, **stopping,
                          "hparams": dict(self.hparams)})

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


def trial_hparams(profile, dataset, method, level, seed, trial):
    """Trial 0: the defaults (with the profile's fixed values); trial t: a draw seeded by a hash of (:func:`search_key`, method,
    level, seed, t): each seed draws configurations of its own."""
    drawn = {} if trial == 0 else sample(searched(method, profile),
                                         stable_seed(search_key(profile, dataset), method, level, seed, trial))
    return tuple(sorted(resolve({**profile.hparams, **drawn}).to_dict().items()))


def cells(profile):
    return [(d, m, level) for d in profile.data.groups for m in profile.run.methods for level in profile.data.levels]


def n_trials(profile, method):
    """``[search] n_trials`` for a method that searches something, 1 (the defaults) for one that only trains, 0 for one that does not."""
    if not METHODS[method].trains:
        return 0
    return profile.search.n_trials if searched(method, profile) else 1


def plan_trials(profile, runs, data_root=None, download=False):
    """Every search trial of the profile: each seed's own, on its training part."""
    return [Job(profile, d, m, level, TRIAL, t, trial_hparams(profile, d, m, level, s, t), str(runs), data_root, download, s)
            for d, m, level in cells(profile) for s in profile.run.seeds for t in range(n_trials(profile, m))]


def select(trial_records):
    """``{(dataset, method, level, seed): trial}``: each seed's trial with the lowest validation cross-entropy.

    The lowest trial index wins among ties (the rule of :mod:`jtln.train`).
    A trial that diverged (its record's ``diverged``) is never selected; a
    seed whose every trial diverged has no selection (:func:`diverged_cells`).
    Each selected trial is summarised as ``{"trial", "hparams", "searched",
    "val_loss", "val_accuracy", "best_epoch", "stopped_epoch", "epochs" (the
    refit's epoch count: the kept epoch, at least 1)}``.
    """
    best = {}
    for r in sorted(trial_records, key=lambda r: r["trial"]):
        if r.get("diverged"):  # a configuration whose loss left the finite numbers: the worst score
            continue
        key = (r["dataset"], r["method"], r["level"], r["inputs"]["seed"])
        summary = {"trial": r["trial"], "hparams": r["hparams"], "searched": r.get("searched", []), "val_loss": r["val_loss"],
                   "val_accuracy": r["val_accuracy"], "best_epoch": r["best_epoch"], "stopped_epoch": r.get("stopped_epoch"),
                   "epochs": max(1, r["best_epoch"])}
        if key not in best or summary["val_loss"] < best[key]["val_loss"]:
            best[key] = summary
    return best


def diverged_cells(trial_records, selection):
    """``{(dataset, method, level, seed): [(trial, hparams, message), ...]}``: the seeds with no selection because every trial
    diverged, each with what it tried."""
    out = {}
    for r in sorted(trial_records, key=lambda r: r["trial"]):
        key = (r["dataset"], r["method"], r["level"], r["inputs"]["seed"])
        if key not in selection and r.get("diverged"):
            out.setdefault(key, []).append((r["trial"], r["hparams"], r["diverged"]))
    return out


def refit_hparams(selected):
    """The hyper-parameters of a seed's refit: the selected trial's, with ``epochs`` its selected epoch count."""
    return tuple(sorted({**selected["hparams"], "epochs": selected["epochs"]}.items()))


def plan_seeds(profile, runs, selection, data_root=None, download=False):
    """Every seed's refit with its own selected configuration; seeds whose search is unfinished are left out."""
    jobs = []
    for d, m, level in cells(profile):
        for s in profile.run.seeds:
            if n_trials(profile, m):
                if (d, m, level, s) not in selection:
                    continue
                hparams = refit_hparams(selection[(d, m, level, s)])
            else:
                hparams = trial_hparams(profile, d, m, level, s, 0)
            jobs.append(Job(profile, d, m, level, SEED, s, hparams, str(runs), data_root, download))
    return jobs
