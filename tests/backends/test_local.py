"""Local-only behaviour: symlinks, hidden files, temporary files and reachability."""

from __future__ import annotations

import errno
import io
import os
import time

import pytest
import trio

from alicefs.backends import LocalBackend, LocationUnavailableError, UnsafeKeyError
from alicefs.backends.base import TEMP_PREFIX, IntegrityError
from alicefs.backends.threaded import ThreadedBackend
from tests.backends.conftest import local_location


@pytest.fixture
def outside(tmp_path):
    target = tmp_path / "outside"
    target.mkdir()
    (target / "secret.txt").write_text("secret")
    return target


def test_symlinked_directory_pointing_out_is_refused(local_root, outside):
    (local_root / "proj").mkdir()
    os.symlink(outside, local_root / "proj" / "link")
    backend = LocalBackend(local_location(local_root))
    with pytest.raises(UnsafeKeyError) as info:
        backend.read("proj/link/secret.txt", 0, 10)
    assert info.value.errno == errno.EACCES
    with pytest.raises(UnsafeKeyError):
        backend.write_atomic("proj/link/new.txt", [b"x"])
    assert not (outside / "new.txt").exists()
    assert list(backend.list()) == []


def test_symlinked_file_pointing_out_is_refused_and_not_listed(local_root, outside):
    os.symlink(outside / "secret.txt", local_root / "leak.txt")
    backend = LocalBackend(local_location(local_root))
    with pytest.raises(UnsafeKeyError):
        backend.stat("leak.txt")
    with pytest.raises(UnsafeKeyError):
        backend.delete("leak.txt")
    assert (outside / "secret.txt").exists()
    assert list(backend.list()) == []


def test_absolute_symlink_pointing_inside_is_followed(local_root):
    (local_root / "p").mkdir()
    (local_root / "p" / "real.png").write_bytes(b"png")
    os.symlink(local_root / "p" / "real.png", local_root / "p" / "alias.png")
    backend = LocalBackend(local_location(local_root))
    assert backend.read("p/alias.png", 0, 3) == b"png"
    assert sorted(o.key for o in backend.list()) == ["p/alias.png", "p/real.png"]


def test_hidden_entries_are_skipped_unless_configured(local_root):
    (local_root / "p" / ".cache").mkdir(parents=True)
    (local_root / "p" / ".cache" / "x").write_text("x")
    (local_root / "p" / ".DS_Store").write_text("x")
    (local_root / "p" / "seen.png").write_text("x")
    assert [o.key for o in LocalBackend(local_location(local_root)).list()] == ["p/seen.png"]
    shown = LocalBackend(local_location(local_root, skip_hidden=False))
    assert sorted(o.key for o in shown.list()) == ["p/.DS_Store", "p/.cache/x", "p/seen.png"]


def test_root_inside_a_dot_folder_lists_normally(tmp_path):
    root = tmp_path / ".local" / "share" / "art"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "a.png").write_bytes(b"a")
    assert [o.key for o in LocalBackend(local_location(root)).list()] == ["proj/a.png"]


def test_temporary_files_are_never_listed(local_root):
    backend = LocalBackend(local_location(local_root, skip_hidden=False))
    (local_root / "p").mkdir()
    (local_root / "p" / f"{TEMP_PREFIX}abc").write_bytes(b"partial")
    assert list(backend.list()) == []


def test_failed_write_leaves_no_temporary_file(local_root):
    backend = LocalBackend(local_location(local_root, skip_hidden=False))

    def chunks():
        yield b"partial"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        backend.write_atomic("p/a.bin", chunks())
    assert os.listdir(local_root / "p") == []


def test_unreachable_root(tmp_path):
    backend = LocalBackend(local_location(tmp_path / "unplugged"))
    with pytest.raises(LocationUnavailableError, match="not reachable"):
        list(backend.list())
    with pytest.raises(LocationUnavailableError):
        backend.free_space()


def test_written_file_has_inode_and_mode_after_umask(local_root):
    backend = LocalBackend(local_location(local_root))
    old = os.umask(0o027)
    try:
        result = backend.write_atomic("p/a", io.BytesIO(b"x"))
    finally:
        os.umask(old)
    st = os.stat(local_root / "p" / "a")
    assert result.info.inode == st.st_ino
    assert st.st_mode & 0o777 == 0o640


def test_directory_is_not_a_file(local_root):
    (local_root / "p").mkdir()
    backend = LocalBackend(local_location(local_root))
    with pytest.raises(IsADirectoryError):
        backend.stat("p")
    with pytest.raises(IsADirectoryError):
        backend.delete("p")


def test_probe(local_root, tmp_path):
    LocalBackend(local_location(local_root)).probe()
    with pytest.raises(LocationUnavailableError, match=r"'gone': root .* is not reachable"):
        LocalBackend(local_location(tmp_path / "missing", name="gone")).probe()


async def test_threaded_backend_runs_calls_under_the_location_limit(local_root):


    backend = LocalBackend(local_location(local_root, max_concurrent=2))
    threaded = ThreadedBackend(backend)
    assert threaded.limiter.total_tokens == 2
    await threaded.call("write_atomic", "p/a", [b"abc"], mtime_ns=10**18)
    assert (await threaded.call("stat", "p/a")).mtime_ns == 10**18
    running, peak = 0, 0

    def slow_read() -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)

        time.sleep(0.05)
        running -= 1
        return backend.read("p/a", 0, 3)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(threaded.run, slow_read)
    assert peak == 2



def test_temporaries_of_an_interrupted_write_are_found_and_removed(local_root, monkeypatch):
    """A write killed mid-copy leaves a temporary file beside the final name; recovery
    removes those of the key it recovers, and nothing else."""
    backend = LocalBackend(local_location(local_root))
    backend.write_atomic("p/a.mp4", io.BytesIO(b"kept"))

    def killed_midway():
        yield b"half of it"
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", lambda *a, **k: None)  # dead before it cleans up
        for key in ("p/a.mp4", "p/b.mp4"):
            with pytest.raises(KeyboardInterrupt):
                backend.write_atomic(key, killed_midway(), overwrite=True)

    def temporaries() -> int:
        return sum(name.startswith(TEMP_PREFIX) for name in os.listdir(local_root / "p"))

    assert temporaries() == 2
    assert backend.remove_temporaries("p/a.mp4") == 1
    assert temporaries() == 1  # b.mp4's is not a.mp4's business
    assert backend.remove_temporaries("p/b.mp4") == 1 and temporaries() == 0
    assert os.listdir(local_root / "p") == ["a.mp4"]
    assert (local_root / "p" / "a.mp4").read_bytes() == b"kept"


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_copy_from_another_local_location_is_verified(tmp_path, monkeypatch, kernel_copy):
    """Local to local copies go through the kernel (copy_file_range), or read and write
    where the filesystem cannot; either way what landed is verified before it is named."""
    from alicefs.hashing import hash_bytes

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = LocalBackend(local_location(tmp_path / "a", "a"))
    target = LocalBackend(local_location(tmp_path / "b", "b"))
    data = os.urandom(3 << 20)
    source.write_atomic("p/v.mp4", io.BytesIO(data))
    if not kernel_copy:
        def cannot(*_args):
            raise OSError(errno.EXDEV, "cross-device")
        monkeypatch.setattr(os, "copy_file_range", cannot)
    result = target.copy_from(source, "p/v.mp4", expected_hash=hash_bytes(data), mtime_ns=7)
    assert result.content_hash == hash_bytes(data) and result.info.mtime_ns == 7
    assert (tmp_path / "b" / "p" / "v.mp4").read_bytes() == data
    with pytest.raises(FileExistsError):
        target.copy_from(source, "p/v.mp4", expected_hash=hash_bytes(data))
    source.write_atomic("p/w.mp4", io.BytesIO(b"changed since it was planned"))
    with pytest.raises(IntegrityError):
        target.copy_from(source, "p/w.mp4", expected_hash=hash_bytes(b"as planned"))
    assert sorted(os.listdir(tmp_path / "b" / "p")) == ["v.mp4"]


def test_many_small_copies_are_verified_and_published_together(tmp_path):
    """copy_many_from: per file the same guarantees as copy_from (verified before it is
    named, never replacing a file, the mtime kept), each file failing on its own."""
    from alicefs.backends.local import CopyItem
    from alicefs.hashing import hash_bytes

    for name in ("a", "b", "outside"):
        (tmp_path / name).mkdir()
    source = LocalBackend(local_location(tmp_path / "a", "a"))
    target = LocalBackend(local_location(tmp_path / "b", "b"))
    files = {f"p/{i}.png": os.urandom(1000 + i) for i in range(40)}
    files["q/deeper/x.png"] = b"another directory"
    for key, data in files.items():
        source.write_atomic(key, io.BytesIO(data))
    os.symlink("0.png", tmp_path / "a" / "p" / "link.png")  # inside the root: followed
    (tmp_path / "outside" / "secret").write_bytes(b"not ours")
    os.symlink(tmp_path / "outside" / "secret", tmp_path / "a" / "p" / "out.png")
    source.write_atomic("p/changed.png", io.BytesIO(b"changed since it was planned"))
    (tmp_path / "b" / "p").mkdir()
    (tmp_path / "b" / "p" / "1.png").write_bytes(b"someone else's")
    items = [CopyItem(key, hash_bytes(data), 1234) for key, data in files.items()]
    items.append(CopyItem("p/link.png", hash_bytes(files["p/0.png"])))
    items.append(CopyItem("p/out.png", hash_bytes(b"not ours")))
    items.append(CopyItem("p/changed.png", hash_bytes(b"as planned")))
    items.append(CopyItem("p/missing.png", hash_bytes(b"")))

    results = dict(zip([i.key for i in items], target.copy_many_from(source, items),
                       strict=True))

    assert isinstance(results["p/1.png"], FileExistsError)
    assert (tmp_path / "b" / "p" / "1.png").read_bytes() == b"someone else's"
    assert isinstance(results["p/out.png"], UnsafeKeyError)
    assert isinstance(results["p/changed.png"], IntegrityError)
    assert isinstance(results["p/missing.png"], FileNotFoundError)
    assert (tmp_path / "b" / "p" / "link.png").read_bytes() == files["p/0.png"]
    for key, data in files.items():
        if key == "p/1.png":
            continue
        result = results[key]
        assert result.content_hash == hash_bytes(data) and result.info.mtime_ns == 1234
        assert (tmp_path / "b" / key).read_bytes() == data
    # Nothing half-done is left behind, and nothing failed was named.
    leftovers = [p.name for p in (tmp_path / "b").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert not (tmp_path / "b" / "p" / "changed.png").exists()
    assert not (tmp_path / "b" / "p" / "out.png").exists()
