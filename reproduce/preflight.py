"""Everything a sweep needs, checked before any work: a failure exits 2 with nothing written, Table 1 included.

* the device (:func:`reproduce.profile.check_device`), and how many local workers can share it; on a cluster
  (``--executor slurm``) the device is checked in each job instead, where the work runs, so the driver needs no GPU;
* the data: for FGVC-Aircraft every image the ITL datasets use (their count missing and the command
  that fetches them); for Fashion-MNIST the files (:func:`jtln.data.fashion_mnist.locate`); for a
  folder dataset its layout (:func:`jtln.data.folder.folder_itl`);
* the backbone's pretrained weights: a ``weights_path`` file, torchvision's cached AlexNet weights or
  timm's, fetched now (with the library's own checks) where the network allows, never later in a run;
* the free disk space that the feature caches (and a download) will take.

With ``--download`` a missing dataset is not an error: it is fetched when the command runs, and its
size counts in the disk check.
"""

import shutil
from pathlib import Path

from reproduce.profile import check_device


def preflight(profile, command, data_root=None, download=False, runs=None, workers=None, executor="local"):
    """Raise ValueError (or FileNotFoundError) naming what is missing for ``command`` ("table1", "sweep" or "all").

    Every check runs, and every problem found is reported at once (one
    missing thing does not hide another), except the disk space, which is
    only sized once the data is there.
    """
    download = download or profile.data.download
    problems = []

    def check(function, *args):
        try:
            return function(*args)
        except (FileNotFoundError, ValueError) as error:
            problems.append(error)

    if command in ("sweep", "all") and executor == "local":
        check(check_device, profile, workers)
    fetch_bytes = check(check_data, profile, command, data_root, download)
    if command in ("sweep", "all"):
        check(check_weights, profile)
        if fetch_bytes is not None:
            check(check_disk, profile, data_root, runs, download, fetch_bytes)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        kind = FileNotFoundError if any(isinstance(p, FileNotFoundError) for p in problems) else ValueError
        raise kind(f"{len(problems)} problems, nothing was done:\n" + "\n".join(f"  - {p}" for p in problems))


def check_data(profile, command, data_root, download):
    """The data is there (or will be downloaded); returns the bytes a download will take on disk (0 if none)."""
    from jtln.data import DATASETS

    root = profile.data_root(data_root)
    present = DATASETS[profile.data.dataset].present
    if present is not None:  # the dataset's own check (jtln.data.Dataset)
        present(root, profile.data.groups, download)
    if profile.data.dataset != "fgvc_aircraft":
        return 0
    from jtln.data import fgvc_aircraft as fgvc

    root = fgvc.resolve_root(root)
    if download:
        return int(2 * fgvc.ARCHIVE_BYTES) if fgvc.needs_fetch(root) else 0
    fgvc.fgvc_aircraft_samples(root)  # the annotation files: FileNotFoundError with where it looked and how to get them
    if command == "table1":  # Table 1 reads the annotations alone
        return 0
    images = fgvc.annotated_images(root)
    missing = fgvc.missing_images(root, images)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(images)} FGVC-Aircraft images that the ITL datasets use are missing under "
            f"{fgvc.data_dir(root) / 'images'} (e.g. {missing[0].name}); fetch them with `python -m reproduce {command} --profile "
            f"{profile.name} --download` (a 2.75 GB archive, into {root}), or pass --data-root DIR holding fgvc-aircraft-2013b/")
    return 0


def check_weights(profile):
    """The pretrained weights the backbone loads are on disk, or are fetched now (torchvision's hash check) where the network allows."""
    model = profile.model
    if not model.pretrained:
        return
    if model.weights_path:
        if not Path(model.weights_path).is_file():
            raise FileNotFoundError(f"[model].weights_path = {model.weights_path!r} is not a file")
        return
    from jtln.models import BACKBONES, TIMM

    entry = BACKBONES.get(model.backbone)
    if entry is not None and entry.weights is not None:
        entry.weights()  # the backbone's own check: FileNotFoundError naming weights_path when neither there nor downloadable
    if model.backbone.startswith(TIMM):
        from jtln.models import timm_backbone

        timm_backbone(model.backbone.removeprefix(TIMM), "DEFAULT", model.image_size, model.trunk_from)  # found, fetched, or said


def cache_bytes(profile, data_root=None):
    """The bytes the feature caches of the profile's ITL datasets will take (prefix outputs and penultimate features)."""
    import torch

    from jtln.data import load_itl
    from reproduce.prepare import draws_of, make_backbone

    data = profile.data
    backbone = make_backbone(profile, pretrained=False)
    with torch.no_grad():
        z = backbone.prefix(torch.zeros(1, 3, backbone.image_size, backbone.image_size))
        per_image = 4 * (z.numel() + backbone.penultimate(z).numel())  # float32
    total = 0
    for group in data.groups:  # the images the preparation will draw (reproduce.prepare.draws_of), not a copy of its logic
        itl, _ = draws_of(profile, load_itl(data.dataset, group, root=profile.data_root(data_root)))
        total += per_image * (len(itl.target_train) + len(itl.target_test) + len(itl.source))
    return total


def check_disk(profile, data_root, runs, download=False, fetch_bytes=0):
    """Enough free space where the caches (and a download) go: the cache estimate plus 10%.

    The caches are not sized when they exist already (a damaged one is
    rebuilt in place), nor when the data that counts their images is still to
    be downloaded.
    """
    from jtln.data import fgvc_aircraft as fgvc

    cache_dir = profile.cache_folder(runs)
    needed = 0
    if not list(cache_dir.glob("features-*.pt")):
        try:
            needed = cache_bytes(profile, data_root)
        except FileNotFoundError:
            if not download:
                raise
    checks = [(cache_dir, needed, "the feature caches")]
    if fetch_bytes:
        checks.append((fgvc.resolve_root(profile.data_root(data_root)), fetch_bytes, "the dataset's archive and images"))
    for folder, size, what in checks:
        free = shutil.disk_usage(_existing(folder)).free
        if size and free < 1.1 * size:
            raise ValueError(f"{what} need about {size / 1e9:.1f} GB under {folder}, but only {free / 1e9:.1f} GB are free there; "
                             "free some space, or point [model].cache_dir (or --data-root) to a larger disk")


def _existing(folder):
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return folder
