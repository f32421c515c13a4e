"""A benchmark whose source classes are known relatives of the target classes, with a dial from related to unrelated.

JTLN's premise is a source whose classes resemble the target's (in the paper,
other aircraft variants); its cost matrices (Eq. 14, Eq. 16) are meant to find
which source class resembles which target class.  Fashion-MNIST's Tops make
both testable, because here the answer is known by construction:

* **Target** (the same in every setting): the four Tops classes (T-shirt/top,
  Pullover, Coat, Shirt).  Their labelled images come from the train-file
  images at *even* positions of each class (in file order); their test images
  are every test-file image of the four classes.  Every setting draws the same
  labelled images for a seed (one :attr:`~jtln.data.itl.ITLDataset.target_pool`).
* **Children**: each Tops class's train-file images at *odd* positions, split at
  their median ink (mean pixel value) into two source classes,
  ``"<class> (light)"`` (the lower half) and ``"<class> (heavy)"``; each has
  exactly one true parent, and no image of a child is a target image.
* **Unrelated**: the six other Fashion-MNIST classes, every train-file image
  (the default benchmark's source for Tops).

The dial (:data:`SETTINGS`): ``related`` has the 8 children; ``mixed`` the 4
light children and the first 4 unrelated classes in Fashion-MNIST's label order
(Trouser, Dress, Sandal, Sneaker); ``unrelated`` the 6 unrelated classes.  Each
dataset's :attr:`~jtln.data.itl.ITLDataset.parents` names every source class's
true parent (None for an unrelated class).
"""

import numpy as np

from jtln.data.fashion_mnist import CLASSES, GROUPS
from jtln.data.itl import ITLDataset

TARGET = GROUPS["Tops"]
#: the target pool every setting shares (:attr:`jtln.data.itl.ITLDataset.target_pool`)
POOL = "Tops (even positions)"
UNRELATED = [c for c in CLASSES if c not in TARGET]
CHILDREN = ("light", "heavy")
#: the source classes of each setting of the dial: (children of which kinds, unrelated classes)
SETTINGS = {
    "related": (CHILDREN, []),
    "mixed": (CHILDREN[:1], UNRELATED[:4]),
    "unrelated": ((), UNRELATED),
}


def child_name(parent, kind):
    return f"{parent} ({kind})"


def split_children(images, members):
    """``members`` (train-file indices of one class's odd positions) split at the median ink: ``{"light": [...], "heavy": [...]}``.

    Ink is the mean pixel value; ties keep file order (a stable sort), so the
    split is a fixed function of the data.
    """
    ink = images[members].reshape(len(members), -1).mean(axis=1)
    order = np.asarray(members)[np.argsort(ink, kind="stable")]
    half = len(order) // 2
    return {"light": sorted(order[:half].tolist()), "heavy": sorted(order[half:].tolist())}


def relatedness_itl(setting, root=None, download=False, arrays=None):
    """The ITL dataset of one setting of the dial ("related", "mixed" or "unrelated"), from Fashion-MNIST's files.

    ``arrays`` (as :func:`jtln.data.fashion_mnist.load_arrays` returns) lets
    tests pass small synthetic data.  Keys and ``loader`` are as in
    :func:`jtln.data.fashion_mnist.fashion_mnist_itl`.
    """
    from jtln.data.fashion_mnist import load_arrays

    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r} of the relatedness benchmark; known: {sorted(SETTINGS)}")
    (x_train, y_train), (x_test, y_test) = arrays if arrays is not None else load_arrays(root, download)
    kinds, unrelated = SETTINGS[setting]
    target_train, target_test, source, source_classes, parents = [], [], [], [], []
    for t, name in enumerate(TARGET):
        members = np.flatnonzero(y_train == CLASSES.index(name))
        target_train += [(("train", int(i)), t) for i in members[0::2]]
        target_test += [(("test", int(i)), t) for i in np.flatnonzero(y_test == CLASSES.index(name))]
        children = split_children(x_train, members[1::2])
        for kind in kinds:
            source += [(("train", i), len(source_classes)) for i in children[kind]]
            source_classes.append(child_name(name, kind))
            parents.append(t)
    for name in unrelated:
        source += [(("train", int(i)), len(source_classes)) for i in np.flatnonzero(y_train == CLASSES.index(name))]
        source_classes.append(name)
        parents.append(None)
    images = {"train": x_train, "test": x_test}
    return ITLDataset(name=setting, target_classes=list(TARGET), source_classes=source_classes, target_train=target_train,
                      target_test=target_test, source=source, loader=lambda key: images[key[0]][key[1]], parents=tuple(parents),
                      target_pool=POOL)
