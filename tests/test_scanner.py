"""Scanning real trees built in tmp dirs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from alicefs.backends import LocalBackend
from alicefs.catalog import Catalog, FileMeta
from alicefs.errors import ApiMisuseError
from alicefs.hashing import hash_bytes
from alicefs.model import LocationType, StorageLocation, location_id_for
from alicefs.registry import StorageRegistry
from alicefs.rules import LocationStatus
from alicefs.scanner import MultiPathScanner
from tests.media_samples import jpeg, mp4, png, webp, xmp


class CountingBackend(LocalBackend):
    """A local backend that counts the content bytes handed out, to prove what a scan reads."""

    bytes_read = 0

    def open_read(self, key):
        stream = super().open_read(key)
        original = stream.read

        def read(size=-1):
            data = original(size)
            CountingBackend.bytes_read += len(data)
            return data

        stream.read = read
        return stream

    def read(self, key, offset, length):
        data = super().read(key, offset, length)
        CountingBackend.bytes_read += len(data)
        return data


def location(root: Path, name: str, priority: int = 50) -> StorageLocation:
    return StorageLocation(location_id=location_id_for(LocationType.LOCAL, str(root), {}),
                           name=name, priority=priority, status=LocationStatus.ACTIVE, rules=(),
                           min_free_bytes=None, type=LocationType.LOCAL, path=str(root))


def write(root: Path, rel: str, data: bytes, age_days: float | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_days is not None:
        t = path.stat().st_mtime - age_days * 86400
        os.utime(path, (t, t))
    return path


@pytest.fixture
def library(tmp_path):
    ssd, hdd = tmp_path / "ssd", tmp_path / "hdd"
    write(ssd, "Sunset Project/renders/Final Shot.PNG", png(seed=1))
    write(ssd, "Sunset Project/renders/noext", png(seed=2))  # no extension: sniffed
    write(ssd, "Sunset Project/clips/intro.mp4", mp4(xmp(["intro"], 4), media_bytes=200_000))
    write(ssd, "Sunset Project/notes/日本語 メモ.txt", "プロンプト".encode())
    write(ssd, "Sunset Project/nested/images/deep.webp", webp(xmp(["deep"], 2)))
    write(ssd, "loose.jpg", jpeg(xmp(["loose"], 1)))  # at the root: project _unsorted
    write(ssd, "images/a.png", png(seed=3))  # a project called images
    write(hdd, "Sunset Project/renders/Final Shot.PNG", png(seed=1))  # same content elsewhere
    write(hdd, "Archive/old.jpg", jpeg(), age_days=400)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        registry = StorageRegistry(catalog)
        registry.register_location(location(ssd, "ssd", 100))
        registry.register_location(location(hdd, "hdd", 50))
        yield catalog, registry, ssd, hdd
        assert catalog.check() == []


def scanner_for(catalog, registry):
    CountingBackend.bytes_read = 0
    return MultiPathScanner(catalog, registry, backend_factory=CountingBackend)


async def test_first_scan_catalogs_everything(library):
    catalog, registry, _ssd, _hdd = library
    stats = await scanner_for(catalog, registry).discover_all_assets()
    assert stats.errors == {}
    by_name = {s.name: s for s in stats.locations}
    assert by_name["ssd"].files == 7 and by_name["ssd"].new_files == 7
    assert by_name["hdd"].files == 2
    paths = {r.logical_path for r in catalog.replicas()}
    assert "Sunset Project/notes/日本語 メモ.txt" in paths and "loose.jpg" in paths
    final = catalog.replicas_of("Sunset Project/renders/Final Shot.PNG")
    assert len(final) == 2 and final[0].content_hash == final[1].content_hash == hash_bytes(
        png(seed=1))
    assert CountingBackend.bytes_read == stats.bytes_read > 0


async def test_media_types_from_names_and_magic_bytes(library):
    catalog, registry, *_ = library
    await scanner_for(catalog, registry).discover_all_assets()
    meta = catalog.all_metadata()
    assert meta["Sunset Project/renders/Final Shot.PNG"].category == "image"
    assert meta["Sunset Project/renders/noext"].mime_type == "image/png"
    assert meta["Sunset Project/clips/intro.mp4"].mime_type == "video/mp4"
    assert meta["Sunset Project/notes/日本語 メモ.txt"].category == "text"


async def test_embedded_xmp_gives_tags_and_quality(library):
    catalog, registry, *_ = library
    await scanner_for(catalog, registry).discover_all_assets()
    clip = catalog.metadata("Sunset Project/clips/intro.mp4")
    assert (clip.tags, clip.tags_source, clip.quality, clip.quality_source) == (
        ("intro",), "embedded", 4, "embedded")
    deep = catalog.metadata("Sunset Project/nested/images/deep.webp")
    assert (deep.tags, deep.quality) == (("deep",), 2)
    assert catalog.metadata("loose.jpg").quality == 1


async def test_second_scan_of_an_unchanged_library_reads_nothing(library):
    catalog, registry, *_ = library
    scanner = scanner_for(catalog, registry)
    await scanner.discover_all_assets()
    CountingBackend.bytes_read = 0
    stats = await scanner.discover_all_assets()
    assert CountingBackend.bytes_read == 0 and stats.bytes_read == 0
    assert all(s.unchanged_files == s.files and s.new_files == s.changed_files == 0
               for s in stats.locations)


async def test_changes_between_scans_are_detected(library):
    catalog, registry, ssd, _hdd = library
    scanner = scanner_for(catalog, registry)
    await scanner.discover_all_assets()
    ssd_id = registry.get_location("ssd").location_id
    # Changed in place with the same size: only the mtime tells.
    target = ssd / "Sunset Project" / "renders" / "Final Shot.PNG"
    new_content = png(seed=9)
    assert len(new_content) == target.stat().st_size
    st = target.stat()
    target.write_bytes(new_content)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    (ssd / "loose.jpg").unlink()
    write(ssd, "Sunset Project/renders/added.png", png(seed=4))
    CountingBackend.bytes_read = 0
    stats = await scanner.scan_location("ssd")
    assert (stats.new_files, stats.changed_files, stats.missing_files) == (1, 1, 1)
    assert CountingBackend.bytes_read == len(new_content) + len(png(seed=4))
    shot = "Sunset Project/renders/Final Shot.PNG"
    changed = {r.location_id: r.content_hash for r in catalog.replicas_of(shot)}
    assert changed[ssd_id] == hash_bytes(new_content)
    assert changed[ssd_id] != changed[registry.get_location("hdd").location_id]
    assert catalog.replicas_of("loose.jpg")[0].state == "missing"
    # It comes back unchanged: present again, without being read.
    write(ssd, "loose.jpg", jpeg(xmp(["loose"], 1)))
    os.utime(ssd / "loose.jpg", ns=(0, catalog.replicas_of("loose.jpg")[0].mtime_ns))
    await scanner.scan_location("ssd")
    assert catalog.replicas_of("loose.jpg")[0].state in ("present",)


async def test_a_file_adopted_from_disk_that_the_catalog_lacks(library):
    catalog, registry, _ssd, _ = library
    scanner = scanner_for(catalog, registry)
    await scanner.discover_all_assets()
    catalog.drop_replicas(registry.get_location("ssd").location_id, ["images/a.png"])
    stats = await scanner.scan_location("ssd")
    assert stats.new_files == 1
    assert catalog.replicas_of("images/a.png")[0].content_hash == hash_bytes(png(seed=3))


async def test_sidecars_win_over_embedded_and_user_values_win_over_both(library):
    catalog, registry, ssd, _ = library
    scanner = scanner_for(catalog, registry)
    write(ssd, "Sunset Project/clips/intro.mp4.xmp", xmp(["from-sidecar"], None))
    write(ssd, "Sunset Project/renders/Final Shot.xmp", xmp(["stem-sidecar"], 5))
    await scanner.discover_all_assets()
    clip = catalog.metadata("Sunset Project/clips/intro.mp4")
    assert (clip.tags, clip.tags_source) == (("from-sidecar",), "sidecar")
    assert (clip.quality, clip.quality_source) == (4, "embedded")
    shot = catalog.metadata("Sunset Project/renders/Final Shot.PNG")
    assert (shot.tags, shot.quality) == (("stem-sidecar",), 5)

    # The user sets a rating; a changed sidecar then updates tags but never the user's value.
    catalog.put_metadata([FileMeta("Sunset Project/renders/Final Shot.PNG", "image", "image/png",
                                   shot.tags, shot.tags_source, 2, "user")])
    sidecar = ssd / "Sunset Project" / "renders" / "Final Shot.xmp"
    sidecar.write_bytes(xmp(["edited"], 1))
    os.utime(sidecar, ns=(0, sidecar.stat().st_mtime_ns + 10**9))
    await scanner.discover_all_assets()
    shot = catalog.metadata("Sunset Project/renders/Final Shot.PNG")
    assert (shot.tags, shot.tags_source, shot.quality, shot.quality_source) == (
        ("edited",), "sidecar", 2, "user")

    # The sidecar goes away: the companion falls back to what is embedded in it.
    (ssd / "Sunset Project" / "clips" / "intro.mp4.xmp").unlink()
    await scanner.discover_all_assets()
    clip = catalog.metadata("Sunset Project/clips/intro.mp4")
    assert (clip.tags, clip.tags_source) == (("intro",), "embedded")


async def test_find_project_assets_matches_projects_exactly(library):
    catalog, registry, *_ = library
    scanner = scanner_for(catalog, registry)
    await scanner.discover_all_assets()
    assets = await scanner.find_project_assets("Sunset Project")
    assert [a.logical_path for a in assets] == [
        "Sunset Project/clips/intro.mp4", "Sunset Project/nested/images/deep.webp",
        "Sunset Project/notes/日本語 メモ.txt", "Sunset Project/renders/Final Shot.PNG",
        "Sunset Project/renders/noext"]
    final = next(a for a in assets if a.logical_path.endswith("Final Shot.PNG"))
    assert sorted(r.location_name for r in final.replicas) == ["hdd", "ssd"]
    # Project `images` is the top-level folder, never a folder called images elsewhere.
    assert [a.logical_path for a in await scanner.find_project_assets("images")] == [
        "images/a.png"]
    assert [a.logical_path for a in await scanner.find_project_assets("_unsorted")] == [
        "loose.jpg"]
    videos = await scanner.find_project_assets("Sunset Project", types=["video", ".webp"])
    assert [a.logical_path for a in videos] == ["Sunset Project/clips/intro.mp4",
                                                "Sunset Project/nested/images/deep.webp"]
    assert await scanner.find_project_assets("Sunset") == []


async def test_progress_callbacks_are_awaited_and_plain_ones_refused(library):
    catalog, registry, *_ = library
    scanner = scanner_for(catalog, registry)
    awaited = []

    def sync_callback(message, current, total):
        raise AssertionError("never called")

    async def async_callback(message, current, total):
        await trio.sleep(0)
        awaited.append((message, current, total))

    with pytest.raises(ApiMisuseError, match="must be an async function"):
        await scanner.discover_all_assets(progress_callback=sync_callback)
    await scanner.discover_all_assets(force_scan=True, progress_callback=async_callback)
    done = [c for c in awaited if c[0].endswith(": done")]
    assert sorted(c[0] for c in done) == ["hdd: done", "ssd: done"]
    assert all(0 <= current <= total for _, current, total in awaited)
    assert ("ssd: done", 7, 7) in done


async def test_hidden_files_are_skipped_but_a_dotted_root_is_fine(tmp_path):
    root = tmp_path / ".local" / "share" / "art"
    write(root, "proj/visible.png", png())
    write(root, "proj/.hidden.png", png())
    write(root, "proj/.thumbs/t.png", png())
    with Catalog(tmp_path / "c.duckdb") as catalog:
        registry = StorageRegistry(catalog)
        registry.register_location(location(root, "art"))
        stats = await MultiPathScanner(catalog, registry).discover_all_assets()
        assert stats.files == 1
        assert [r.logical_path for r in catalog.replicas()] == ["proj/visible.png"]
        shown = await MultiPathScanner(catalog, registry, skip_hidden=False).discover_all_assets()
        assert shown.files == 3


async def test_an_unplugged_disk_does_not_mark_everything_missing(library):
    catalog, registry, ssd, _ = library
    scanner = scanner_for(catalog, registry)
    await scanner.discover_all_assets()
    shutil.rmtree(ssd)
    ssd.mkdir()  # the empty mount point an unplugged disk leaves behind
    stats = await scanner.discover_all_assets()
    assert "lists no files but the catalog has 7" in stats.errors["ssd"]
    assert all(r.state == "present" for r in catalog.replicas())
    ssd.rmdir()
    stats = await scanner.discover_all_assets()
    assert "not reachable" in stats.errors["ssd"]
    assert next(s for s in stats.locations if s.name == "hdd").error is None


async def test_a_scan_uses_the_processes_open_backends_and_their_limits(library):
    """Given the mount's backends, a scan opens none of its own: it shares their clients and
    capacity limiters, so a location never sees more than its max_concurrent calls."""
    from alicefs.backends.threaded import ThreadedBackend

    catalog, registry, _ssd, _hdd = library
    calls: dict[str, int] = {}

    class Shared(ThreadedBackend):
        async def run(self, func, *args, **kwargs):
            calls[self.location.name] = calls.get(self.location.name, 0) + 1
            return await super().run(func, *args, **kwargs)

    def no_new_backends(*_args, **_kwargs):
        raise AssertionError("the scan opened a backend of its own")

    opened = {loc.location_id: Shared(CountingBackend(loc), trio.CapacityLimiter(2))
              for loc in registry.list_locations()}
    stats = await MultiPathScanner(catalog, registry, backend_factory=no_new_backends,
                                   backends=opened).discover_all_assets()
    assert stats.errors == {} and stats.files == 9
    assert calls["ssd"] > 0 and calls["hdd"] > 0


async def test_metadata_is_stored_in_batches_with_nothing_left_out(library, monkeypatch):
    """A first discover stores metadata a batch at a time (DuckDB keeps a transaction's rows
    in memory): every file still gets its type, tags and ratings, sidecars included."""
    monkeypatch.setattr("alicefs.scanner.WRITE_BATCH", 2)
    catalog, registry, ssd, _ = library
    write(ssd, "Sunset Project/renders/Final Shot.xmp", xmp(["stem-sidecar"], 5))
    await scanner_for(catalog, registry).discover_all_assets()
    meta = catalog.all_metadata()
    assert set(meta) == {r.logical_path for r in catalog.replicas()
                         if not r.logical_path.endswith(".xmp")}  # sidecars have none
    assert meta["Sunset Project/renders/noext"].mime_type == "image/png"
    assert meta["Sunset Project/clips/intro.mp4"].tags == ("intro",)
    assert (meta["Sunset Project/renders/Final Shot.PNG"].tags,
            meta["Sunset Project/renders/Final Shot.PNG"].quality) == (("stem-sidecar",), 5)


async def test_a_first_discover_holds_a_batch_of_files_not_all_of_them(library, monkeypatch):
    """What a scan read is stored a batch at a time, metadata right after its replicas: the
    scan never holds what it found for every file (issue 14: a library of a million files),
    and never stores a file's metadata before the catalog holds the file."""
    from alicefs import scanner as scanner_module

    monkeypatch.setattr(scanner_module, "WRITE_BATCH", 10)
    monkeypatch.setattr(scanner_module, "READ_BATCH_FILES", 5)
    catalog, registry, ssd, _ = library
    for i in range(300):
        write(ssd, f"Big/shots/frame_{i:03}.png", png(seed=10 + i))
    write(ssd, "Big/shots/frame_007.xmp", xmp(["stem-sidecar"], 3))  # listed among them
    held, orphans = [], []
    flush = scanner_module._LocationScan._flush_replicas
    store = scanner_module._LocationScan._store_metadata

    async def flush_replicas(self):
        held.append(len(self.examined))
        await flush(self)

    def store_metadata(self, found):
        cataloged = {r.logical_path for r in catalog.replicas()}
        orphans.extend(key for key, *_ in found if key not in cataloged)
        store(self, found)

    monkeypatch.setattr(scanner_module._LocationScan, "_flush_replicas", flush_replicas)
    monkeypatch.setattr(scanner_module._LocationScan, "_store_metadata", store_metadata)
    stats = await scanner_for(catalog, registry).discover_all_assets()
    assert stats.errors == {} and orphans == []
    assert max(held) < 50, held  # a few batches at most, not the 307 files read
    meta = catalog.all_metadata()
    assert len([key for key in meta if key.startswith("Big/")]) == 300
    assert (meta["Big/shots/frame_007.png"].tags, meta["Big/shots/frame_007.png"].quality) == (
        ("stem-sidecar",), 3)
