"""The ITL split of Sec. 4, for any dataset described as a list of samples.

Target categories are the fine categories of one parent group, source
categories all the others.  Target training images are the target
categories' training images, target testing images their test images, and
source images *all* images (training and test) of the source categories.
Nothing from the target test split is ever used for training or for model
selection: each seed's :class:`Draw` takes its target training *and
validation* images from the target categories' training images only.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from jtln.seeding import stable_seed


@dataclass(frozen=True)
class Sample:
    """One image: ``key`` locates it (a file path, or an index into an array), ``fine`` its category, ``subset`` "train"/"test"."""

    key: object
    fine: str
    subset: str


@dataclass
class ITLDataset:
    """An ITL dataset: label spaces and three pools of images.

    ``target_classes``/``source_classes`` are ordered; a sample's label is its
    index in the list of its side.  Each pool is a list of ``(key, label)``:
    ``target_train`` every training image of the target categories (what a
    :class:`Draw` takes its labelled target images from), ``target_test``
    their test images, ``source`` the source images.
    """

    name: str
    target_classes: list
    source_classes: list
    target_train: list
    target_test: list
    source: list
    loader: object = None  # how to turn a key into an image, set by the dataset module
    #: where known by construction, each source class's true parent: the index of the target class it is a sub-class of,
    #: or None for a source class related to none (:mod:`jtln.data.relatedness`); None where nothing is known
    parents: tuple = None
    #: the name the target images are drawn under (default: ``name``): datasets that share their target pool share it, so
    #: that every seed draws the same labelled target images in each of them
    target_pool: str = None

    @property
    def L_s(self):
        return len(self.source_classes)

    @property
    def L_t(self):
        return len(self.target_classes)

    def table1_column(self, draw=None):
        """This dataset's column of Table 1; with a :class:`Draw`, its labelled target images (training + validation) and source images."""
        return {
            "target_categories": self.L_t,
            "target_train_images": len(self.target_train) if draw is None else len(draw.target_train) + len(draw.target_val),
            "target_test_images": len(self.target_test),
            "source_categories": self.L_s,
            "source_images": len(self.source) if draw is None else len(draw.source),
        }


@dataclass(frozen=True)
class Draw:
    """One seed's data at one scarcity level: positions in the pools of an :class:`ITLDataset`.

    ``target_train`` and ``target_val`` (disjoint) are the labelled target
    images, ``source`` the source images that the run sees.  The target test
    pool is used whole.
    """

    level: object
    seed: object
    target_train: tuple
    target_val: tuple
    source: tuple

    def training(self, refit=False):
        """The labelled target images that train a run: the training split, or with ``refit`` both splits (the refit of a
        tested run, which uses every labelled image)."""
        return self.target_train + self.target_val if refit else self.target_train


def _by_class(pool, n_classes):
    labels = np.array([label for _, label in pool], dtype=np.int64)
    return [np.flatnonzero(labels == c) for c in range(n_classes)]


def n_validation(n, fraction):
    """How many of ``n`` labelled images of a class go to validation: ``round(fraction * n)``, at least 1, leaving 1 to train."""
    v = max(1, round(fraction * n))
    if n - v < 1:
        raise ValueError(f"{n} labelled image(s) per class leave none for training after {v} for validation")
    return v


def check_level(level, where="level"):
    """A scarcity level: an int >= 2 (labelled images per target class, training + validation) or "all"."""
    if level != "all" and (not isinstance(level, int) or isinstance(level, bool) or level < 2):
        raise ValueError(f"{where} must be an int >= 2 (labelled images per target class) or \"all\", got {level!r}")
    return level


def cache_dir():
    """Where downloads and extracted datasets go: ``$JTLN_CACHE``, default ``~/.cache/jtln``."""
    return Path(os.environ.get("JTLN_CACHE", Path.home() / ".cache" / "jtln"))


def draw(itl, level, seed, validation_fraction, source_per_class=None, data_seed=0):
    """The labelled target images (``level`` per class, or "all") split into training and validation, and the source images.

    Each class's images are put in an order drawn from a hash of
    (dataset, ``data_seed``, ``seed``, class): the same for every method and
    every level, so levels are nested (the 10 images of a class are the first
    10 of its 67) and runs of one seed are paired.  The first
    :func:`n_validation` of a level's images are its validation images.
    ``source_per_class`` images of each source class (None: all) are drawn
    the same way.
    """
    check_level(level)
    train, val = [], []
    for c, members in enumerate(_by_class(itl.target_train, itl.L_t)):
        n = len(members) if level == "all" else level
        if n > len(members):
            raise ValueError(f"{itl.name}: level {level} asks for {n} labelled images of {itl.target_classes[c]!r}, "
                             f"which has {len(members)}")
        order = np.random.default_rng(stable_seed("target", itl.target_pool or itl.name, data_seed, seed, c)).permutation(members)
        v = n_validation(n, validation_fraction)
        val += order[:v].tolist()
        train += order[v:n].tolist()
    source = []
    for c, members in enumerate(_by_class(itl.source, itl.L_s)):
        if source_per_class and source_per_class > len(members):
            raise ValueError(f"{itl.name}: source_per_class={source_per_class}, but {itl.source_classes[c]!r} has {len(members)}")
        order = np.random.default_rng(stable_seed("source", itl.name, data_seed, seed, c)).permutation(members)
        source += order[: source_per_class or len(members)].tolist()
    return Draw(level, seed, tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(source)))


def draw_digest(itl, d):
    """A short hash of the images a draw selects (their keys), for checking from records that runs were paired."""
    import hashlib

    keys = [[itl.target_train[i][0] for i in d.target_train], [itl.target_train[i][0] for i in d.target_val],
            [itl.source[i][0] for i in d.source]]
    return hashlib.sha256(repr(keys).encode()).hexdigest()[:16]


def restrict(itl, draws):
    """The dataset cut down to the images some draw uses, and the draws re-indexed into it (what the feature cache needs)."""
    used_t = sorted({i for d in draws for i in d.target_train + d.target_val})
    used_s = sorted({i for d in draws for i in d.source})
    at_t, at_s = {i: k for k, i in enumerate(used_t)}, {i: k for k, i in enumerate(used_s)}
    small = replace(itl, target_train=[itl.target_train[i] for i in used_t], source=[itl.source[i] for i in used_s])
    moved = [replace(d, target_train=tuple(at_t[i] for i in d.target_train), target_val=tuple(at_t[i] for i in d.target_val),
                     source=tuple(at_s[i] for i in d.source)) for d in draws]
    return small, moved


def build_itl(name, samples, groups, group):
    """Split ``samples`` (a list of :class:`Sample`) into the ITL dataset whose target is ``group``.

    ``groups`` maps each parent-group name to its fine categories.  Raises
    ValueError for an unknown group, a group with no categories, or
    categories of the group that have no samples.
    """
    if group not in groups:
        raise ValueError(f"unknown group {group!r} for {name}; known groups: {sorted(groups)}")
    present = sorted({s.fine for s in samples})
    target_classes = [c for c in groups[group] if c in present]
    if not groups[group]:
        raise ValueError(f"group {group!r} of {name} has no categories")
    missing = [c for c in groups[group] if c not in present]
    if missing:
        raise ValueError(f"categories {missing} of group {group!r} have no samples in {name}")
    source_classes = [c for c in present if c not in set(target_classes)]
    if not source_classes:
        raise ValueError(f"group {group!r} of {name} covers every category: no source categories are left")
    t_index = {c: i for i, c in enumerate(target_classes)}
    s_index = {c: i for i, c in enumerate(source_classes)}
    for s in samples:
        if s.subset not in ("train", "test"):
            raise ValueError(f"sample {s.key!r} has subset {s.subset!r}, expected 'train' or 'test'")
    return ITLDataset(
        name=group,
        target_classes=target_classes,
        source_classes=source_classes,
        target_train=[(s.key, t_index[s.fine]) for s in samples if s.fine in t_index and s.subset == "train"],
        target_test=[(s.key, t_index[s.fine]) for s in samples if s.fine in t_index and s.subset == "test"],
        source=[(s.key, s_index[s.fine]) for s in samples if s.fine in s_index],
    )
