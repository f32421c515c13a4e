"""The ITL split of Sec. 4, for any dataset described as a list of samples.

Target categories are the fine categories of one parent group, source
categories all the others.  Target training images are the target
categories' training images, target testing images their test images, and
source images *all* images (training and test) of the source categories.
Nothing from the target test split is ever used for training or for model
selection: a validation split, where one is needed, is carved from the
target training images (:meth:`ITLDataset.carve_validation`).
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image: ``key`` locates it (a file path, or an index into an array), ``fine`` its category, ``subset`` "train"/"test"."""

    key: object
    fine: str
    subset: str


@dataclass
class ITLDataset:
    """An ITL dataset: label spaces and the three (four, with validation) splits.

    ``target_classes``/``source_classes`` are ordered; a sample's label is its
    index in the list of its side.  Each split is a list of ``(key, label)``.
    """

    name: str
    target_classes: list
    source_classes: list
    target_train: list
    target_test: list
    source: list
    target_val: list = field(default_factory=list)
    loader: object = None  # how to turn a key into an image, set by the dataset module

    @property
    def L_s(self):
        return len(self.source_classes)

    @property
    def L_t(self):
        return len(self.target_classes)

    def table1_column(self):
        """This dataset's column of Table 1 (counts before any validation carving)."""
        return {
            "target_categories": self.L_t,
            "target_train_images": len(self.target_train) + len(self.target_val),
            "target_test_images": len(self.target_test),
            "source_categories": self.L_s,
            "source_images": len(self.source),
        }

    def carve_validation(self, per_class, seed):
        """Move ``per_class`` target training images of each class to ``target_val`` (deterministic in ``seed``)."""
        if self.target_val:
            raise ValueError(f"{self.name}: a validation split was already carved")
        counts = Counter(label for _, label in self.target_train)
        short = {self.target_classes[c]: n for c, n in counts.items() if n <= per_class}
        if per_class > 0 and short:
            raise ValueError(f"{self.name}: validation_per_class={per_class} leaves no training image for {short}")
        rng = np.random.default_rng(seed)
        chosen = set()
        for label in range(self.L_t):
            members = [i for i, (_, y) in enumerate(self.target_train) if y == label]
            chosen.update(rng.choice(members, size=per_class, replace=False).tolist() if per_class else [])
        self.target_val = [s for i, s in enumerate(self.target_train) if i in chosen]
        self.target_train = [s for i, s in enumerate(self.target_train) if i not in chosen]
        return self


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
