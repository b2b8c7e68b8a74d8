"""Random namespace operations over two local locations: afterwards `rm -rf` of the tree
succeeds and leaves nothing on any location."""

from __future__ import annotations

import errno
import os
import random
import shutil

import pytest

NAMES = ["a", "b", "c"]
FILES = ["x.png", "y.txt", "z.png"]  # images go to one location, the rest to the other


def _random_dir(rng: random.Random, root, shallowest: int = 0, deepest: int = 3):
    path = root
    for _ in range(rng.randint(shallowest, deepest)):
        path = path / rng.choice(NAMES)
    return path


def _operate(top, seed: int) -> list[str]:
    """The seeded random operations below `top`; what each gave."""
    rng = random.Random(seed)
    results = []
    for _ in range(600):
        op = rng.choice(["mkdir", "mkdir", "create", "create", "unlink", "rename", "rmdir"])
        # Below the top directory only: it is the one removed at the end.
        directory = _random_dir(rng, top, 1 if op in ("rename", "rmdir") else 0)
        try:
            if op == "mkdir":
                (directory / rng.choice(NAMES)).mkdir()
            elif op == "create":
                (directory / rng.choice(FILES)).write_bytes(b"data")
            elif op == "unlink":
                (directory / rng.choice(FILES)).unlink()
            elif op == "rename":
                os.rename(directory, _random_dir(rng, top) / rng.choice(NAMES))
            else:
                directory.rmdir()
            results.append(f"{op} ok")
        except OSError as exc:
            results.append(f"{op} {errno.errorcode[exc.errno]}")
    return results


def _tree(top) -> list[str]:
    return sorted(f"{p.relative_to(top)}{'/' if p.is_dir() else ''}" for p in top.rglob("*"))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_namespace_operations_then_remount_then_rm_rf(mount_factory, tmp_path, seed):
    """The same operations in a native directory and in the mount give the same results
    and the same tree, also after a remount; then `rm -rf` leaves nothing anywhere."""
    fs = mount_factory({"ssd": "priority: 100, rules: [{include_types: [image]}]",
                        "hdd": "priority: 50"})
    native = tmp_path / "native" / "stress"
    native.mkdir(parents=True)
    top = fs.projects / "stress"
    top.mkdir()
    assert _operate(top, seed) == _operate(native, seed)
    assert _tree(top) == _tree(native)
    fs.restart()
    assert _tree(top) == _tree(native)
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            assert os.path.lexists(os.path.join(directory, name)), (directory, name,
                                                                     _tree(top))
    shutil.rmtree(top)
    assert not top.exists()
    for root in fs.roots.values():
        assert list(root.rglob("*")) == [], root
