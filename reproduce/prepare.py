"""Preparation: each ITL dataset's draws, frozen-prefix features, cost matrices and linear probes, computed once.

Everything is cached on disk under ``<runs>/cache`` (or ``[model]
cache_dir``), so that every process of a sweep — a local worker or a SLURM
array task — only loads it, and in memory in a :class:`Workspace` that
its owner passes along.

The cost matrices a sweep prepares are this module's policy, on the
sweep's side of the line: :data:`COST_KEYS` names each one the methods can
start from, and :func:`cost_keys` the ones a profile's methods can ask for.
The mathematics is :mod:`jtln.costs`'.
"""

from dataclasses import dataclass, field

import torch

from jtln.atomic import atomic_path
from jtln.hparams import CHOICES, resolve
from jtln.methods import METHODS, cost_options
from jtln.seeding import stable_seed
from jtln.train import PROTOCOL
from reproduce.plan import searched

#: the cost matrices a sweep prepares per draw, by key: (kind, MK-MMD kernel weights)
COST_KEYS = {"mmd": ("mmd", "uniform"), "mmd-optimal": ("mmd", "optimal"), "ot": ("ot", None)}
#: what the tables call each of them
COST_LABELS = {"mmd": r"MK-MMD, uniform $\beta$ (Eq. 14)", "mmd-optimal": r"MK-MMD, optimal $\beta$", "ot": "OT (Eq. 16)"}


def cost_key(method, hp):
    """The key (in :data:`COST_KEYS`) of the prepared cost matrix that ``method`` starts from under ``hp``, or None."""
    spec = METHODS[method].cost_spec(hp)
    return None if spec is None else next(key for key, value in COST_KEYS.items() if value == spec)


def cost_keys(profile):
    """The prepared cost matrices that the profile's methods can ask for, in a fixed order."""
    keys = set()
    for m in profile.run.methods:
        names = set(searched(m, profile))
        for kind in CHOICES["cost_kind"] if "cost_kind" in names else (None,):
            for weights in CHOICES["mmd_kernel_weights"] if "mmd_kernel_weights" in names else (None,):
                chosen = {k: v for k, v in (("cost_kind", kind), ("mmd_kernel_weights", weights)) if v is not None}
                key = cost_key(m, resolve({**profile.hparams, **chosen}))
                if key is not None:
                    keys.add(key)
    return sorted(keys)


def make_backbone(profile, pretrained=None):
    """The profile's backbone; without pretrained weights, initialised from a fixed seed, so that it is the same network
    whatever this process drew before (a profile with ``pretrained = false`` is as reproducible as one with weights)."""
    from jtln.models import build_backbone

    m = profile.model
    pretrained = m.pretrained if pretrained is None else pretrained
    weights = (m.weights_path or "DEFAULT") if pretrained else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stable_seed("backbone", m.backbone, profile.data.data_seed) % 2**31)
        return build_backbone(m.backbone, weights=weights, image_size=m.image_size, trunk_from=m.trunk_from)


@dataclass
class Prepared:
    """One ITL dataset ready for runs: draws by (level, seed), features, cost matrices by (level, seed, refit, key), probes
    by (level, seed, refit).

    A seed's search trials' cost matrices and probes (``refit`` false) come
    from its training part (its validation images stay held out); its
    refit's from all its labelled images, training and validation, as the
    refit sees them (:mod:`reproduce.plan`).
    """

    itl: object
    draws: dict
    cached: object
    costs: dict
    probes: dict
    backbone: object = field(repr=False)


@dataclass(frozen=True)
class Preparation:
    """One ITL dataset to prepare, as a cluster's array task receives it (:func:`prepare_all`)."""

    profile: object
    dataset: str
    runs: str
    data_root: str = None
    download: bool = False


def prepare_all(preparations):
    """An array task's preparation on a cluster: the profile's device checked where the task runs, then each dataset
    prepared to disk (``<runs>/cache``), where the runs' tasks load it.  Returns how many were prepared."""
    from reproduce.profile import check_device

    for p in preparations:
        check_device(p.profile, 1)
        prepare(p.profile, p.dataset, p.runs, p.data_root, p.download)
    return len(preparations)


class Workspace:
    """The prepared ITL datasets of one process, each built (or loaded from disk) once and then kept.

    :meth:`prefetch` prepares datasets to disk in a process of its own while
    this one works (a sweep on a GPU trains the first dataset's runs while
    the next is prepared); :meth:`prepared` then waits for it and loads.  A
    process of its own, not a thread: preparation seeds torch's global
    generator (:func:`make_backbone`), which a run in this process draws its
    dropout masks from.
    """

    def __init__(self):
        self._prepared, self._pending, self._pool = {}, {}, None

    @staticmethod
    def _key(profile, dataset, runs, data_root, download):
        # the whole profile, not its path: two profiles written to one path (a test's, a user's edit) are two preparations
        return (repr(profile), dataset, str(runs), data_root, download)

    def prepared(self, profile, dataset, runs, data_root=None, download=False):
        key = self._key(profile, dataset, runs, data_root, download)
        if key in self._pending:
            self._pending.pop(key).get()  # prepared to disk by the prefetching process (its error, if any, raised here)
        if key not in self._prepared:
            self._prepared[key] = prepare(profile, dataset, runs, data_root, download)
        return self._prepared[key]

    def prefetch(self, profile, datasets, runs, data_root=None, download=False, processes=1):
        """Prepare ``datasets`` to disk in background processes (spawned: no state of this one): one after the other, or
        ``processes`` at a time, each with its share of the CPU's threads."""
        import multiprocessing
        import os

        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // processes)
            self._pool = multiprocessing.get_context("spawn").Pool(processes, initializer=_preparing, initargs=(threads,))
        for dataset in datasets:
            key = self._key(profile, dataset, runs, data_root, download)
            if key not in self._prepared and key not in self._pending:
                self._pending[key] = self._pool.apply_async(prepare_all,
                                                            ([Preparation(profile, dataset, str(runs), data_root, download)],))

    def close(self, wait=True):
        """End the background processes: after what they are preparing, or (``wait`` false: an interrupted sweep) at once,
        killing them (a preparation left half-done writes nothing: its file is written atomically)."""
        if self._pool is not None:
            if wait:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool, self._pending = None, {}


def _preparing(threads):
    """A preparing process: its share of the threads, and Ctrl-C left to the sweep, which ends it (:meth:`Workspace.close`)."""
    import signal

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def draws_of(profile, full):
    """Every draw a sweep of ``profile`` makes of the ITL dataset ``full``, by ``(level, seed)``, and the dataset restricted
    to the images they use: ``(itl, draws)``."""
    from jtln.data import restrict

    data = profile.data
    keys = [(level, seed) for level in data.levels for seed in profile.run.seeds]
    itl, draws = restrict(full, [profile.draw(full, level, seed) for level, seed in keys])
    return itl, dict(zip(keys, draws))


def _inputs(profile, dataset, runs, data_root, download):
    """What a preparation of ``dataset`` starts from, and the two files it is stored in: ``(itl, draws, backbone,
    features path, prepared path)`` (the feature cache, :mod:`jtln.cache`; the costs and probes)."""
    from jtln.cache import cache_key, cache_path
    from jtln.data import load_itl
    from jtln.probe import DEFAULT_SCALINGS, FOLDS, PROBE_CS

    data = profile.data
    hp = resolve(profile.hparams)
    full = load_itl(data.dataset, dataset, root=profile.data_root(data_root), download=download or data.download)
    itl, draws = draws_of(profile, full)
    backbone = make_backbone(profile)
    key = cache_key(backbone, itl, data.dataset)
    # everything the stored costs and probes depend on; PROTOCOL: the probes' selection and the refit (jtln.train)
    settings = (key, sorted(map(repr, draws.items())), hp.mmd_estimator, hp.cost_normalize, hp.cost_samples_per_class,
                PROTOCOL, *cost_keys(profile), PROBE_CS, DEFAULT_SCALINGS, FOLDS)
    cache_dir = profile.cache_folder(runs)
    return itl, draws, backbone, cache_path(cache_dir, key), cache_dir / f"prepared-{stable_seed(*settings):08x}.pt"


def stored_files(profile, dataset, runs, data_root=None, download=False):
    """The two files ``dataset``'s preparation is stored in, ``(feature cache, costs and probes)``, named without
    computing either."""
    *_, features, prepared = _inputs(profile, dataset, runs, data_root, download)
    return features, prepared


def stored(profile, dataset, runs, data_root=None, download=False):
    """Whether ``dataset``'s preparation is on disk already (:func:`stored_files`): a resumed sweep loads it instead of
    starting processes, or SLURM tasks, to prepare it.  A damaged file is found, and remade, by :func:`prepare`."""
    return all(path.is_file() for path in stored_files(profile, dataset, runs, data_root, download))


def prepare(profile, dataset, runs, data_root=None, download=False):
    """Draws, cached features, cost matrices and linear probes of one ITL dataset (cached on disk under ``<runs>/cache``)."""
    from jtln.cache import cached_features, on_device

    itl, draws, backbone, features, path = _inputs(profile, dataset, runs, data_root, download)
    cached = cached_features(backbone, itl, profile.data.dataset, cache_dir=features.parent, device=profile.run.device,
                             progress=True)
    saved = _load_prepared(path)
    device = profile.run.device
    if saved is None:
        saved = _costs_and_probes(itl, draws, cached, resolve(profile.hparams), cost_keys(profile), device, dataset)
        with atomic_path(path) as tmp:
            torch.save(saved, tmp)
    cached, where = on_device(cached, device)
    if where != "on the CPU":
        print(f"{dataset}: feature caches {where}", flush=True)
    for module, _ in backbone.trunk_groups:  # the pretrained trunk where the runs train: each run copies it there, not from the host
        module.to(device)
    return Prepared(itl, draws, cached, saved["costs"], saved["probes"], backbone)


def _costs_and_probes(itl, draws, cached, hp, wanted, device, dataset):
    """Per draw, twice (its search trials' training part, and its refit's every labelled image): the cost matrices
    ``wanted`` and the probes of both heads; ``{"costs": {(level, seed, refit, key): C}, "probes": {(level, seed, refit):
    (target probe, source probe)}}``, on the CPU."""
    from tqdm.auto import tqdm

    from jtln.costs import class_cost_matrix
    from jtln.probe import fit_probe, fit_with

    saved = {"costs": {}, "probes": {}}
    P, y = cached.P["target_train"], cached.y["target_train"]
    for (level, seed), d in tqdm(draws.items(), desc=f"{dataset}: cost matrices and probes", unit="draw"):
        P_s, y_s = cached.P["source"][list(d.source)], cached.y["source"][list(d.source)]
        for refit in (False, True):
            train = list(d.training(refit))
            for key in wanted:
                kind, weights = COST_KEYS[key]
                options = {**cost_options(hp), **({"kernel_weights": weights} if weights else {})}
                C = class_cost_matrix(kind, P_s.to(device), y_s.to(device), P[train].to(device), y[train].to(device),
                                      itl.L_s, itl.L_t, **options)
                saved["costs"][(level, seed, refit, key)] = C.cpu()  # computed on the profile's device, kept on the CPU
            # the probe's L2 strength and scaling cross-validated on the run's own labelled images (a trial's validation
            # images stay held out); the source head's probe fitted with the same
            probe_t = fit_probe(P[train], y[train], itl.L_t)
            saved["probes"][(level, seed, refit)] = (probe_t, fit_with(P_s, y_s, itl.L_s, probe_t.C, probe_t.scaling))
    return saved


def _load_prepared(path):
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 -- a damaged file is rebuilt
        return None

