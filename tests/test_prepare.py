"""Preparation in background processes (a GPU sweep prepares the next dataset while the first one's runs train; several
workers prepare the datasets side by side)."""

from dataclasses import replace

import torch

from reproduce.prepare import Workspace
from reproduce.profile import load_profile
from reproduce.sweep import overlaps_preparation


def one_draw(profile):
    """``profile`` cut to one level and one seed: one draw to prepare per dataset."""
    return replace(profile, data=replace(profile.data, levels=profile.data.levels[:1], table2_level=profile.data.levels[0]),
                   run=replace(profile.run, seeds=profile.run.seeds[:1]))


def test_a_dataset_prepared_in_a_background_process_is_the_one_prepared_here(tmp_path):
    profile = one_draw(load_profile("smoke"))
    here = Workspace().prepared(profile, "Tops", tmp_path / "here")
    background = Workspace()
    background.prefetch(profile, ["Tops"], tmp_path / "background")
    there = background.prepared(profile, "Tops", tmp_path / "background")  # waits for the process, then loads its files
    background.close()
    assert there.draws == here.draws and there.cached.key == here.cached.key
    for part in ("Z", "y", "P"):
        for split, tensor in getattr(here.cached, part).items():
            assert torch.equal(getattr(there.cached, part)[split], tensor), (part, split)
    assert there.costs.keys() == here.costs.keys() and all(torch.equal(there.costs[k], here.costs[k]) for k in here.costs)
    for key, (probe_t, probe_s) in here.probes.items():
        assert all(torch.equal(a.weight, b.weight) and a.C == b.C for a, b in zip(there.probes[key], (probe_t, probe_s)))
    assert sorted(p.name for p in (tmp_path / "background" / "cache").iterdir()) == sorted(
        p.name for p in (tmp_path / "here" / "cache").iterdir())


def test_a_parallel_sweep_starts_preparing_processes_only_for_datasets_not_on_disk(tmp_path, monkeypatch):
    """``stored`` foresees the preparation's two files without computing them; a sweep with several workers prepares
    side by side only what is missing, and a resumed one loads everything here, starting no process."""
    import pytest

    from reproduce.prepare import stored
    from reproduce.sweep import _prepare_locally

    class Started(Exception):
        pass

    def prefetch(self, profile, datasets, *args, **options):
        raise Started(sorted(datasets))

    profile = one_draw(load_profile("smoke"))
    monkeypatch.setattr(Workspace, "prefetch", prefetch)
    with pytest.raises(Started, match=r"\['Footwear', 'Tops'\]"):  # nothing on disk: both in processes
        _prepare_locally(profile, Workspace(), 2, tmp_path, None, False)
    assert not stored(profile, "Tops", tmp_path)
    Workspace().prepared(profile, "Tops", tmp_path)
    assert stored(profile, "Tops", tmp_path) and not stored(profile, "Footwear", tmp_path)
    _prepare_locally(profile, Workspace(), 2, tmp_path, None, False)  # one left: prepared here, no process
    assert stored(profile, "Footwear", tmp_path)
    _prepare_locally(profile, Workspace(), 2, tmp_path, None, False)  # resumed: both loaded here
    other = replace(profile, hparams={**profile.hparams, "cost_samples_per_class": 4})  # other costs: not stored
    assert not stored(other, "Tops", tmp_path)


def test_only_a_gpu_sweep_with_one_worker_and_several_datasets_overlaps_its_preparation():
    smoke = load_profile("smoke")
    on_gpu = replace(smoke, run=replace(smoke.run, device="cuda"))
    assert overlaps_preparation(on_gpu, 1) and not overlaps_preparation(on_gpu, 2) and not overlaps_preparation(smoke, 1)
    one_group = replace(on_gpu, data=replace(on_gpu.data, groups=["Tops"]))
    assert not overlaps_preparation(one_group, 1)


def test_two_profiles_at_one_path_are_two_preparations(tmp_path):
    smoke = one_draw(load_profile("smoke"))
    other = replace(smoke, data=replace(smoke.data, source_per_class=4))
    assert other.path == smoke.path
    workspace = Workspace()
    first, second = workspace.prepared(smoke, "Tops", tmp_path), workspace.prepared(other, "Tops", tmp_path)
    assert first is not second and len(first.itl.source) != len(second.itl.source)
    assert workspace.prepared(smoke, "Tops", tmp_path) is first  # and each is kept


def test_an_interrupted_sweep_ends_its_preparing_processes_at_once(tmp_path):
    """Side by side (several workers), and killed with the sweep (close(wait=False)): none outlives it to compete for the
    cores with the next command, and none wrote a preparation (its file is written atomically, at the end)."""
    profile = load_profile("smoke")
    workspace = Workspace()
    workspace.prefetch(profile, ["Tops", "Footwear"], tmp_path, processes=2)
    processes = list(workspace._pool._pool)
    assert len(processes) == 2 and all(p.is_alive() for p in processes)
    workspace.close(wait=False)
    assert not any(p.is_alive() for p in processes)
    assert not list(tmp_path.rglob("prepared-*.pt"))
