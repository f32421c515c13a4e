"""Experiment profiles: TOML files in ``reproduce/profiles/``, parsed once and checked whole before any work.

A profile names the datasets and the data protocol (``[data]``), the backbone
(``[model]``), the search (``[search]``), the methods and seeds (``[run]``)
and hyper-parameters fixed by hand (``[hparams]``, see :mod:`jtln.hparams`;
a fixed one is not searched).  Unknown keys, wrong types and values out of
range are errors that name the key and the file.
"""

import re
import tomllib
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from jtln.config import check_range, check_value

PROFILES_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    groups: tuple
    root: str = ""
    download: bool = False
    #: labelled target images per class (training + validation), one scarcity level each; "all": every training image
    levels: tuple = (67,)
    #: the level of Table 2 (the paper's ~67); default: the last of ``levels``
    table2_level: object = None
    #: the share of each level's labelled images that is the validation split (at least one per class)
    validation_fraction: float = 0.2
    #: source images per class that a seed draws (0: all)
    source_per_class: int = 0
    #: mixed into every draw's seed, so that a profile can ask for other draws
    data_seed: int = 0
    #: the paper column ("Boeing" or "Airbus") whose claims each group is tested against; default: the first two groups
    #: play Boeing and Airbus
    plays: tuple = ()

    def identity(self):
        """What of this section determines a run's result (not where the files are, nor how the tables read it)."""
        from jtln.data import DATASETS

        # a dataset whose files are where its root says (a folder dataset) keeps its root: other files, another run
        in_identity = self.dataset in DATASETS and DATASETS[self.dataset].root_in_identity
        ignored = ("download", "groups", "levels", "table2_level", "plays") + (() if in_identity else ("root",))
        return {k: v for k, v in asdict(self).items() if k not in ignored}


@dataclass(frozen=True)
class ModelSpec:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    weights_path: str = ""
    image_size: int = 0  # 0: the backbone's default
    cache_dir: str = ""
    #: a timm backbone's first trained top-level child (jtln.models.timm_backbone); "": its default cut
    trunk_from: str = ""

    def identity(self):
        return {k: v for k, v in asdict(self).items() if k != "cache_dir" and (k != "trunk_from" or v)}


@dataclass(frozen=True)
class SearchSpec:
    #: configurations each seed tries per (dataset, method, level); trial 0 is the defaults
    n_trials: int = 6
    #: a trial stops after this many epochs without a lower validation cross-entropy (early stopping; 0: never)
    patience: int = 5


@dataclass(frozen=True)
class RunSpec:
    #: default: every registered method (jtln.methods.METHODS), in the tables' order
    methods: tuple = None
    seeds: tuple = (0, 1, 2, 3, 4, 5)
    device: str = "cpu"
    workers: int = 1
    #: the network's arithmetic (jtln.train.PRECISIONS): "float32", or "bf16" autocast (on a GPU; the OT loss and costs stay
    #: in float32/float64)
    precision: str = "float32"
    #: TF32 matrix products on CUDA (faster on Ampere and later, 10 mantissa bits)
    tf32: bool = False

    def identity(self):
        """What of this section determines a run's result besides the seeds and methods."""
        return {"device": self.device, "precision": self.precision, "tf32": self.tf32}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    data: DataSpec
    model: ModelSpec
    search: SearchSpec
    run: RunSpec
    hparams: dict
    path: str = ""

    def runs_folder(self, runs=None):
        """Where a sweep keeps its records: ``runs`` (``--runs``), or ``runs/<name>``."""
        return Path(runs or Path("runs") / self.name)

    def cache_folder(self, runs=None):
        """Where the feature caches and prepared costs and probes go: ``[model] cache_dir``, or ``cache/`` in the runs folder."""
        return Path(self.model.cache_dir or self.runs_folder(runs) / "cache")

    def data_root(self, given=None):
        """Where the data is looked for: ``given`` (``--data-root``), the profile's ``[data] root``, or None (the dataset's
        own places, :mod:`jtln.data`)."""
        return given or self.data.root or None

    def draw(self, itl, level, seed):
        """The draw (:func:`jtln.data.draw`) of ``level`` labelled images per class that ``seed`` makes of ``itl`` under
        the profile's data settings."""
        from jtln.data import draw

        data = self.data
        return draw(itl, level, seed, data.validation_fraction, data.source_per_class or None, data.data_seed)

    @property
    def plays(self):
        """The paper column each group plays: ``[data] plays``; by default Boeing and Airbus for the first two groups of a
        benchmark built to play them, none for a dataset of the user's own (:attr:`jtln.data.Dataset.plays_paper`)."""
        from jtln.data import DATASETS
        from reproduce.paper import DEFAULT_PLAYS

        if self.data.plays:
            return self.data.plays
        dataset = DATASETS.get(self.data.dataset)
        return DEFAULT_PLAYS if dataset is None or dataset.plays_paper else ()

    @property
    def is_paper(self):
        """The paper's benchmark: its published Table 2 is shown beside ours."""
        return self.data.dataset == "fgvc_aircraft"


SECTIONS = {"data": DataSpec, "model": ModelSpec, "search": SearchSpec, "run": RunSpec}
TOP_LEVEL = {"name": str, "description": str}
LIST_ITEMS = {"groups": str, "methods": str, "seeds": int, "plays": str}


def _build(cls, table, where):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known keys: {sorted(known)}")
    missing = [f.name for f in fields(cls) if f.name not in table and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{where} lacks the key(s) {missing}")
    values = {}
    for key, value in table.items():
        expected = known[key].type
        if expected is tuple:
            check_value(value, list, f"{where}.{key}")
            if not value:
                raise ValueError(f"{where}.{key} is empty")
            for item in value:
                if key in LIST_ITEMS:
                    check_value(item, LIST_ITEMS[key], f"{where}.{key} item {item!r}")
            if key != "plays" and len(set(map(repr, value))) != len(value):
                raise ValueError(f"{where}.{key} lists an entry twice: {value}")
            value = tuple(value)
        elif expected is not object:
            check_value(value, expected, f"{where}.{key}")
        values[key] = value
    return cls(**values)


def _check_level(level, where):
    from jtln.data.itl import check_level

    check_level(level, where)


def _check(profile, where):
    """Ranges and cross-references of a built profile: every name it uses is checked against its registry."""
    from jtln.data import check_dataset
    from jtln.methods import METHODS
    from jtln.models import TIMM, check_backbone

    data, run = profile.data, profile.run
    for name, check in (("[data].dataset", lambda: check_dataset(data.dataset, data.groups)),
                        ("[model].backbone", lambda: check_backbone(profile.model.backbone))):
        try:
            check()
        except ValueError as error:
            raise ValueError(f"{where}: {name}: {error}") from None
    for level in data.levels:
        _check_level(level, f"{where}: [data].levels item")
    if profile.model.trunk_from and not profile.model.backbone.startswith(TIMM):
        raise ValueError(f"{where}: [model].trunk_from applies to a \"timm:<model>\" backbone, not {profile.model.backbone!r}")
    if data.plays:
        from reproduce.paper import PAPER_TABLE2

        if len(data.plays) != len(data.groups) or set(data.plays) - set(PAPER_TABLE2):
            raise ValueError(f"{where}: [data].plays must name one of {sorted(PAPER_TABLE2)} for each of the {len(data.groups)} "
                             f"groups, got {list(data.plays)}")
    if data.table2_level not in data.levels:
        raise ValueError(f"{where}: [data].table2_level = {data.table2_level!r} is not one of [data].levels {list(data.levels)}")
    check_range(data.validation_fraction, f"{where}: [data].validation_fraction", 0, 1, low_open=True)
    check_range(data.source_per_class, f"{where}: [data].source_per_class", 0)
    check_range(profile.model.image_size, f"{where}: [model].image_size", 0)
    check_range(profile.search.n_trials, f"{where}: [search].n_trials", 1)
    check_range(profile.search.patience, f"{where}: [search].patience", 0)
    unknown = [m for m in run.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"{where}: [run].methods has unknown method(s) {unknown}; known: {sorted(METHODS)}")
    from jtln.hparams import resolve
    from jtln.models import backbone_rates

    rates = [k for k in backbone_rates(profile.model.backbone) if k != "lr_head"]  # the layers below the heads
    if all(k in profile.hparams for k in rates):  # the search moves none of them: a method that needs them to move is refused
        fixed = resolve(profile.hparams)
        for m in run.methods:
            refused = METHODS[m].refuses({k: getattr(fixed, k) for k in rates})
            if refused:
                raise ValueError(f"{where}: [hparams] {refused}")
    check_range(min(run.seeds), f"{where}: [run].seeds item", 0)
    check_range(run.workers, f"{where}: [run].workers", 1)
    _check_workers(run.device, run.workers, f"{where}: [run].workers = {run.workers} on [run].device = {run.device!r}")
    from jtln.train import PRECISIONS

    if run.precision not in PRECISIONS:
        raise ValueError(f"{where}: [run].precision must be one of {PRECISIONS}, got {run.precision!r}")
    if run.device not in ("cpu", "cuda") and not run.device.startswith("cuda:"):
        raise ValueError(f"{where}: [run].device must be 'cpu', 'cuda' or 'cuda:N', got {run.device!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", profile.name):
        raise ValueError(f"{where}: name {profile.name!r} must be letters, digits, '_', '.' or '-' (it names output folders)")


def _check_workers(device, workers, what):
    """One local worker per GPU: several would each hold their own feature caches and CUDA context on it."""
    if device != "cpu" and workers > 1:
        raise ValueError(f"{what}: local workers would each hold their own copy of the feature caches and their own CUDA "
                         "context on one GPU; use one worker per GPU (--workers 1, or [run].workers = 1), or --executor slurm "
                         "with --gpus 1 to spread the runs over several GPUs")


def check_device(profile, workers=None):
    """The profile's device is present here, and ``workers`` (default: the profile's) can share it; checked before any work."""
    import torch

    device, workers = profile.run.device, workers or profile.run.workers
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"profile {profile.name}: [run].device = {device!r}, but torch finds no CUDA device here")
    _check_workers(device, workers, f"profile {profile.name}: {workers} workers on {device!r}")


def resolve_path(name_or_path):
    """A profile name (``fashion_mnist``) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
        raise FileNotFoundError(f"profile {name_or_path!r} not found (looked for {path}); available: {available}")
    return path


def load_profile(name_or_path):
    """Read and check a profile; raises ValueError (FileNotFoundError for a missing file) naming the key and the problem."""
    path = resolve_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"profile {path} is not valid TOML: {error}") from error
    allowed = set(TOP_LEVEL) | set(SECTIONS) | {"hparams"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in profile {path}; known: {sorted(allowed)}")
    for key, expected in TOP_LEVEL.items():
        if key in raw:
            check_value(raw[key], expected, f"{path.name}: {key}")
    for key in SECTIONS:
        if key in raw and not isinstance(raw[key], dict):
            raise ValueError(f"{path.name}: {key} must be a [{key}] section, got {raw[key]!r}")
    if "data" not in raw:
        raise ValueError(f"profile {path} has no [data] section")
    sections = {name: _build(cls, raw.get(name, {}), f"{path.name}: [{name}]") for name, cls in SECTIONS.items()}
    if sections["run"].methods is None:
        from jtln.methods import METHODS, method_order

        sections["run"] = RunSpec(**{**asdict(sections["run"]), "methods": tuple(method_order(METHODS))})
    data = sections["data"]
    if data.table2_level is None:
        sections["data"] = data = DataSpec(**{**asdict(data), "table2_level": data.levels[-1]})
    hparams = raw.get("hparams", {})
    if not isinstance(hparams, dict):
        raise ValueError(f"{path.name}: hparams must be a [hparams] section")
    from jtln.hparams import check_overrides

    check_overrides(hparams, where=f"{path.name}: [hparams]")
    profile = Profile(name=raw.get("name", path.stem), description=raw.get("description", ""), hparams=hparams,
                      path=str(path), **sections)
    _check(profile, path.name)
    return profile
