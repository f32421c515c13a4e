"""Experiment profiles: TOML files in ``reproduce/profiles/``, checked strictly.

A profile names the datasets and splits (``[data]``), the backbone
(``[model]``), the methods and seeds (``[run]``) and any hyper-parameter
overrides (``[hparams]``, see :mod:`jtln.hparams`).  Unknown keys and wrong
types are errors that name the key and the file.
"""

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

PROFILES_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    groups: list
    root: str = ""
    download: bool = False
    target_train_per_class: int = 67  # Fashion-MNIST only
    source_per_class: int = 0  # Fashion-MNIST only; 0 = the whole train file
    validation_per_class: int = 0  # carved from target training images, never from the test split
    split_seed: int = 0

    def itl_options(self, data_root=None, download=False):
        """Keyword arguments of :func:`jtln.data.load_itl` for this dataset."""
        options = {"root": data_root or self.root or None, "download": download or self.download}
        if self.dataset in ("fashion_mnist", "synthetic"):
            options.update(
                target_train_per_class=self.target_train_per_class,
                source_per_class=self.source_per_class or None,
                split_seed=self.split_seed,
            )
        return options


@dataclass(frozen=True)
class ModelSpec:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    weights_path: str = ""
    image_size: int = 0  # 0: the backbone's default
    cache_dir: str = ""


@dataclass(frozen=True)
class RunSpec:
    methods: list = field(default_factory=lambda: ["target_only", "consecutive", "joint", "jtln_mmd", "jtln_ot"])
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3, 4])
    device: str = "cpu"
    workers: int = 1


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    data: DataSpec
    model: ModelSpec
    run: RunSpec
    hparams: dict
    path: str = ""


SECTIONS = {"data": DataSpec, "model": ModelSpec, "run": RunSpec}
TOP_LEVEL = {"name": str, "description": str}


def _check_type(value, expected, where):
    if expected is list:
        ok = isinstance(value, list)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ValueError(f"{where} must be of type {expected.__name__}, got {type(value).__name__} ({value!r})")


def _build(cls, table, where):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known keys: {sorted(known)}")
    for key, value in table.items():
        _check_type(value, known[key].type, f"{where}.{key}")
    return cls(**table)


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
            _check_type(raw[key], expected, f"{path.name}: {key}")
    if "data" not in raw:
        raise ValueError(f"profile {path} has no [data] section")
    sections = {name: _build(cls, raw.get(name, {}), f"{path.name}: [{name}]") for name, cls in SECTIONS.items()}
    hparams = raw.get("hparams", {})
    if hparams:
        from jtln.hparams import check_overrides

        check_overrides(hparams, where=f"{path.name}: [hparams]")
    data = sections["data"]
    if data.dataset not in ("fgvc_aircraft", "fashion_mnist", "synthetic"):
        raise ValueError(f"{path.name}: [data].dataset must be 'fgvc_aircraft', 'fashion_mnist' or 'synthetic', got {data.dataset!r}")
    return Profile(
        name=raw.get("name", path.stem), description=raw.get("description", ""), hparams=hparams, path=str(path), **sections
    )
