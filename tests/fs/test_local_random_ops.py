"""The random data test of test_cloud_random_ops, on local locations: 10,000 reads, writes,
appends, truncates, mapped reads and writes, fsyncs (after which the location's file must
hold the model's content), closes and reopens, and renames, each checked against a model;
then the locations hold the model, also after a remount."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fs.conftest import MountedFS
from tests.fs.test_cloud_random_ops import Model, run_steps


@dataclass
class LocalMount:
    """What the model needs of a mount: its tree, and what a location holds."""

    fs: MountedFS

    @property
    def projects(self) -> Path:
        return self.fs.projects

    def stored(self, key: str) -> bytes | None:
        """The current version of `key` in the locations: the only copy, or the copy that
        holds what the mount shows (a file renamed over another keeps the replaced one's
        copies elsewhere as older versions of its name, brought level by sync; the mount's
        content is checked against the model on its own). None: in no location."""
        copies = [root / key for root in self.fs.roots.values() if (root / key).exists()]
        if not (self.fs.projects / key).exists():
            assert not copies, f"{key} is not in the mount but in {copies}"
            return None
        if len(copies) == 1:
            return copies[0].read_bytes()
        shown = (self.fs.projects / key).read_bytes()
        return shown if any(path.read_bytes() == shown for path in copies) else None


@pytest.fixture
def local(mount_factory) -> LocalMount:
    """Images go to the SSD, everything else to the HDD."""
    return LocalMount(mount_factory({"ssd": "priority: 100, rules: [{include_types: [image]}]",
                                     "hdd": "priority: 50"}))


def run_random_operations(local: LocalMount, seed: int, names: list[str]) -> None:
    model = Model(local, names, random.Random(seed))
    run_steps(model, seed)
    for remount in (False, True):
        if remount:
            local.fs.restart()
        for name in names:
            expected = model.content.get(name)
            assert local.stored(model.key(name)) == (
                bytes(expected) if expected is not None else None), (name, remount)


@pytest.mark.parametrize("seed", [11, 12])
def test_random_operations_on_one_file(local, seed):
    run_random_operations(local, seed, ["one.mp4"])


@pytest.mark.parametrize("seed", [14])
def test_random_operations_on_two_files_in_two_locations(local, seed):
    """A video (HDD) and an image (SSD) renamed over each other: the content goes with the
    name; the replaced file's copy elsewhere is kept as an older version of the name."""
    run_random_operations(local, seed, ["a.mp4", "b.png"])
