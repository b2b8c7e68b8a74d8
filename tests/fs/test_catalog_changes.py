"""What a mount shows of others' catalog writes (scans, alicefs-ctl commands), driven
directly on a mount's state built from a real catalog (no FUSE): only the paths written
are read back, and the work on the event loop comes in slices with checkpoints between."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from alicefs.catalog import Catalog, FileMeta, Replica
from alicefs.config import load_settings
from alicefs.fs import catalog_changes
from alicefs.fs.catalog_changes import forget_location, show_catalog_changes
from alicefs.fs.namespace import location_view
from alicefs.fs.options import MountOptions
from alicefs.fs.state import MountState, build_state

FILES = 50
HDD_ONLY = 10


@pytest.fixture
def state(tmp_path: Path):
    """A mount's state over two local locations: `p/f<i>.png` on ssd, the even ones on hdd
    as well, and `p/h<i>.png` on hdd alone."""
    config = tmp_path / "settings.yaml"
    config.write_text(
        "storage:\n"
        f"  catalog: {tmp_path / 'catalog.duckdb'}\n"
        f"  cache_dir: {tmp_path / 'cache'}\n"
        "  locations:\n"
        f"    - {{name: ssd, path: {tmp_path / 'ssd'}, priority: 100}}\n"
        f"    - {{name: hdd, path: {tmp_path / 'hdd'}, priority: 50}}\n")
    settings = load_settings(config)
    ssd, hdd = (loc.location_id for loc in settings.locations)
    with Catalog(settings.catalog_path) as catalog:
        catalog.put_locations(settings.locations)
        catalog.put_replicas([Replica(ssd, f"p/f{i}.png", 1, 1) for i in range(FILES)]
                             + [Replica(hdd, f"p/f{i}.png", 1, 1) for i in range(0, FILES, 2)]
                             + [Replica(hdd, f"p/h{i}.png", 1, 1) for i in range(HDD_ONLY)])
        for loc in settings.locations:
            Path(loc.path).mkdir()
        yield build_state(settings, catalog, MountOptions())


def _ids(state: MountState) -> tuple[str, str]:
    named = state.namespace.location_id_named
    return named("ssd"), named("hdd")


def _checkpoints_while(work) -> int:
    """How often another task ran while `work()` did."""
    ran = 0

    async def main() -> None:
        nonlocal ran

        async def count() -> None:
            nonlocal ran
            while True:
                await trio.sleep(0)
                ran += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count)
            await trio.sleep(0)
            ran = 0
            await work()
            nursery.cancel_scope.cancel()

    trio.run(main)
    return ran


def test_only_the_paths_written_are_read_back(state, monkeypatch):
    ssd, hdd = _ids(state)
    catalog = state.catalog
    with catalog.watch() as written:
        catalog.put_replicas([Replica(ssd, "p/f1.png", 99, 2), Replica(hdd, "p/new.png", 5, 5)])
        catalog.put_metadata([FileMeta("p/f3.png", "image", "image/png", ("hero",), "user")])
    # Written behind its back, as nobody would: a read-back of everything would show it.
    catalog.put_replicas([Replica(ssd, "p/f5.png", 77, 7)])
    monkeypatch.setattr(catalog_changes, "APPLY_SLICE", 1)  # and in any number of slices
    changes = 0

    async def work() -> None:
        nonlocal changes
        changes = await show_catalog_changes(state, written, {ssd, hdd}, set)

    _checkpoints_while(work)
    files = state.namespace.files
    assert changes == 3
    assert files["p/f1.png"].replicas[ssd].size == 99
    assert files["p/new.png"].replicas[hdd].size == 5
    assert files["p/f3.png"].tags == ("hero",)
    assert files["p/f5.png"].replicas[ssd].size == 1


def test_tags_set_through_the_mount_and_not_written_yet_stay(state):
    ssd, hdd = _ids(state)
    node = state.namespace.files["p/f2.png"]
    node.tags = ("mine",)
    state.queue.put_metadata(FileMeta("p/f2.png", "image", "image/png", ("mine",), "user"))
    with state.catalog.watch() as written:
        state.catalog.put_metadata([FileMeta("p/f2.png", "image", "image/png", ("scan",))])

    async def work() -> None:
        await show_catalog_changes(state, written, {ssd, hdd}, set)

    _checkpoints_while(work)
    assert node.tags == ("mine",)


def test_a_removed_location_leaves_the_namespace_in_slices(state, monkeypatch):
    ssd, hdd = _ids(state)
    monkeypatch.setattr(catalog_changes, "APPLY_SLICE", 10)

    async def work() -> None:
        await forget_location(state, hdd)

    # Five slices: other tasks ran between them (trio's scheduling may fold the last one
    # in); done in one go, none would.
    assert _checkpoints_while(work) >= 2
    files = state.namespace.files
    assert len(files) == FILES and all(list(node.replicas) == [ssd] for node in files.values())
    assert location_view(hdd) not in state.namespace.dirs
    assert not state.usable(hdd)


def test_a_file_renamed_while_its_location_is_removed_goes_all_the_same(state, monkeypatch):
    """Removing a location visits a snapshot of the paths in slices: a file renamed between
    them, from a path not visited yet to one already visited, is visited under its new name."""
    ssd, hdd = _ids(state)
    namespace = state.namespace
    monkeypatch.setattr(catalog_changes, "APPLY_SLICE", 10)

    async def work() -> None:
        async def rename_at_the_first_checkpoint() -> None:
            while state.usable(hdd):  # not begun yet
                await trio.sleep(0)
            namespace.rename_file(f"p/h{HDD_ONLY - 1}.png", "p/a.png")
            namespace.rename_file("p/f0.png", "p/b.png")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forget_location, state, hdd)
            nursery.start_soon(rename_at_the_first_checkpoint)

    _checkpoints_while(work)
    files = namespace.files
    assert "p/a.png" not in files and not any(vp.startswith("p/h") for vp in files)
    assert list(files["p/b.png"].replicas) == [ssd]
    assert all(list(node.replicas) == [ssd] for node in files.values())
