"""A directory on a local disk or network mount, holding files at `<root>/<logical path>`.

Every access opens the path and then checks where the opened file really is
(`/proc/self/fd/N`), so a symbolic link, at any depth, that leads outside the root is refused
(EACCES) without a window between check and use. Writes create their temporary file, link
and rename relative to a checked descriptor of the parent directory, for the same reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat as stat_mod
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from alicefs.backends.base import (
    TEMP_PREFIX,
    Backend,
    DirInfo,
    IntegrityError,
    LocationUnavailableError,
    ObjectInfo,
    UnchangedIf,
    UnsafeKeyError,
    WriteResult,
    check_key,
)
from alicefs.hashing import CHUNK_SIZE, PARALLEL_HASH_BYTES, hash_bytes, hash_fd, new_hasher
from alicefs.model import StorageLocation
from alicefs.rules import SpaceInfo

# Errors from os.link that mean "this filesystem cannot hard-link", not "the name is taken".
_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)  # syncfs, renameat2: not in the os module


class LocalBackend(Backend):
    def __init__(self, location: StorageLocation, *, skip_hidden: bool = True):
        super().__init__(location, skip_hidden=skip_hidden)
        self.root = Path(location.path)
        self._root_real: str | None = None

    # -- paths -------------------------------------------------------------------------

    def _real_root(self) -> str:
        """The root's real path, checked now (listing and probing always check afresh)."""
        try:
            real = os.path.realpath(self.root, strict=True)
        except OSError as exc:
            raise LocationUnavailableError(
                f"location {self.location.name!r}: root {self.root} is not reachable "
                f"({exc.strerror})") from None
        if not os.path.isdir(real):
            raise LocationUnavailableError(
                f"location {self.location.name!r}: root {self.root} is not a directory")
        self._root_real = real
        return real

    def _root(self) -> str:
        return self._root_real or self._real_root()

    def _check_fd(self, fd: int, key: str) -> None:
        """Close `fd` and refuse `key` unless the opened file is inside the root."""
        root = self._root()
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real != root and not real.startswith(root + "/"):
            os.close(fd)
            raise UnsafeKeyError(errno.EACCES, f"{key!r} resolves outside location "
                                               f"{self.location.name!r}")

    def _open_path(self, key: str) -> int:
        """An O_PATH descriptor of `key` (links followed), verified to be inside the root."""
        check_key(key)
        fd = os.open(f"{self._root()}/{key}", _PATH_FLAGS)
        self._check_fd(fd, key)
        return fd

    def _open_file(self, key: str) -> int:
        """A read-only descriptor of the regular file at `key`. Opened as O_PATH first so that
        a FIFO or device (which could block or act on open) is refused before it is opened."""
        path_fd = self._open_path(key)
        try:
            return _reopen_regular(path_fd, key)
        finally:
            os.close(path_fd)

    def _open_file_in(self, key: str, dirs: dict[str, int]) -> int:
        """`_open_file`, for many files: each directory is opened and checked once (`dirs`
        keeps its descriptors, for the caller to close), the file relative to it without
        following a link (a link is opened the checked way)."""
        check_key(key)
        parent_key, _, name = key.rpartition("/")
        if parent_key not in dirs:
            dirs[parent_key] = self._open_dir(parent_key, create=False)
        path_fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dirs[parent_key])
        try:
            if stat_mod.S_ISLNK(os.fstat(path_fd).st_mode):
                return self._open_file(key)
            return _reopen_regular(path_fd, key)
        finally:
            os.close(path_fd)

    def _open_dir(self, dir_key: str, create: bool) -> int:
        """An O_PATH descriptor of the directory `dir_key` ("" is the root), creating missing
        components when `create`. Components are created one at a time relative to a checked
        parent, so no directory is ever made outside the root."""
        root = self._root()
        if not dir_key:
            return os.open(root, _PATH_FLAGS | os.O_DIRECTORY)
        try:
            fd = self._open_path(dir_key)
        except FileNotFoundError:
            if not create:
                raise
        else:
            if not stat_mod.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, f"{dir_key!r} is not a directory")
            return fd
        fd = os.open(root, _PATH_FLAGS | os.O_DIRECTORY)
        walked = ""
        for part in dir_key.split("/"):
            walked = f"{walked}/{part}" if walked else part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                child = os.open(part, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=fd)
            finally:
                os.close(fd)
            self._check_fd(child, walked)
            fd = child
        return fd

    def probe(self) -> None:
        root = self._real_root()
        if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
            raise LocationUnavailableError(
                f"location {self.location.name!r}: root {self.root} is not readable and "
                "writable by this user")

    # -- reading -----------------------------------------------------------------------

    def list(self, prefix: str = "", *, unchanged_if: UnchangedIf | None = None
             ) -> Iterator[ObjectInfo | str]:
        root = self._real_root()
        start, start_key = root, ""
        if prefix:
            start_key = prefix.rstrip("/")
            try:
                fd = self._open_path(start_key)
            except (FileNotFoundError, NotADirectoryError):
                return
            os.close(fd)
            start = f"{root}/{start_key}"
            if not os.path.isdir(start):
                return
            start_key += "/"
        skip_hidden = self.skip_hidden
        # (directory path, its key prefix): keys are built by concatenation, not relpath,
        # because this loop runs once per file of the library.
        stack = [(start, start_key)]
        while stack:
            directory, key_prefix = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while listing
            for entry in entries:
                name = entry.name
                if name[0] == "." and (skip_hidden or name.startswith(TEMP_PREFIX)):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, f"{key_prefix}{name}/"))
                        continue
                    if entry.is_symlink():
                        # Followed only to a file inside the root; linked directories are not
                        # descended into (no loops, no second path to the same tree).
                        real = os.path.realpath(entry.path)
                        if not real.startswith(root + "/"):
                            continue
                        st = os.stat(entry.path)
                    else:
                        st = entry.stat(follow_symlinks=False)
                    if not stat_mod.S_ISREG(st.st_mode):
                        continue  # sockets, fifos, devices
                except FileNotFoundError:
                    continue
                key = key_prefix + name
                if unchanged_if is not None and unchanged_if(
                        key, (st.st_size, st.st_mtime_ns, st.st_ino)):
                    yield key
                else:
                    yield ObjectInfo(key, st.st_size, st.st_mtime_ns, st.st_ino)

    def list_dirs(self) -> list[DirInfo]:
        """Every directory below the root, empty ones included, with its mode, owner and
        mtime: the catalog records files only, and the mount must still show the
        directories a user made, as they were made."""
        root = self._real_root()
        found: list[DirInfo] = []
        stack = [(root, "")]
        while stack:
            directory, key_prefix = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name[0] == "." and (self.skip_hidden
                                             or entry.name.startswith(TEMP_PREFIX)):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    key = key_prefix + entry.name
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found.append(DirInfo(key, st.st_mode, st.st_uid, st.st_gid,
                                         st.st_mtime_ns))
                    stack.append((entry.path, key + "/"))
        return found

    def set_dir_attrs(self, key: str, *, mode: int | None = None,
                      owner: tuple[int, int] | None = None,
                      times_ns: tuple[int, int] | None = None) -> None:
        """chmod, chown and utimens of the directory at `key`, through a checked
        descriptor."""
        fd = self._open_dir(key, create=False)
        try:
            path = f"/proc/self/fd/{fd}"
            if owner is not None:
                os.chown(path, *owner)
            if mode is not None:  # after chown, which clears setuid/setgid bits
                os.chmod(path, mode & 0o7777)
            if times_ns is not None:
                os.utime(path, ns=times_ns)
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo:
        fd = self._open_path(key)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{key!r} is a directory")
        return ObjectInfo(key, st.st_size, st.st_mtime_ns, st.st_ino)

    def read(self, key: str, offset: int, length: int) -> bytes:
        fd = self._open_file(key)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def open_read(self, key: str) -> BinaryIO:
        # Unbuffered: callers read in large chunks, and a buffered reader would allocate
        # its buffer for every small file of a scan.
        return os.fdopen(self._open_file(key), "rb", buffering=0)

    # -- writing -----------------------------------------------------------------------

    def write_atomic(self, key: str, data: BinaryIO | Iterable[bytes], *,
                     expected_hash: str | None = None, overwrite: bool = False,
                     mtime_ns: int | None = None, replaces: ObjectInfo | None = None
                     ) -> WriteResult:
        """Backend.write_atomic, plus compare-and-swap: with `replaces` (the file as `stat`
        returned it) the file is published only while `key` is still that file (same size,
        mtime and inode, checked just before the rename); another file there is
        FileExistsError and nothing is published. A key that is gone meanwhile is created,
        but nothing that appears in its place is replaced."""
        return self._write(key, lambda fd: _write_chunks(fd, data), expected_hash,
                           _Publish(overwrite, replaces), mtime_ns)

    def copy_from(self, source: LocalBackend, key: str, *, expected_hash: str,
                  mtime_ns: int | None = None, replaces: ObjectInfo | None = None
                  ) -> WriteResult:
        """`write_atomic` of `key` from another local location, copied by the kernel
        (copy_file_range: the bytes never pass through Python, and a filesystem that can
        shares the blocks) and verified by one read of what landed. Never replaces a file
        (FileExistsError), unless it is the one `replaces` names (see write_atomic)."""
        source_fd = source._open_file(key)
        try:
            return self._write(key, lambda fd: _copy_range(source_fd, fd), expected_hash,
                               _Publish(False, replaces), mtime_ns)
        finally:
            os.close(source_fd)

    def link_as(self, key: str, new_key: str, expected: ObjectInfo) -> ObjectInfo:
        """Give the file at `key` a second name `new_key` (a hard link: no bytes copied, and
        the content stays under `new_key` when `key` is replaced by a rename). Only while
        `key` is still `expected` (size, mtime, inode): FileExistsError otherwise, or when
        `new_key` is taken."""
        with (self._in_parent(key, create=False) as (old_fd, old_name),
              self._in_parent(new_key, create=True) as (new_fd, new_name)):
            try:
                os.link(old_name, new_name, src_dir_fd=old_fd, dst_dir_fd=new_fd,
                        follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in _NO_LINK_ERRNOS:
                    raise
                return self._copy_as(key, new_key, expected)
            st = os.stat(new_name, dir_fd=new_fd, follow_symlinks=False)
            if not stat_mod.S_ISREG(st.st_mode) or not _same_file(st, expected):
                os.unlink(new_name, dir_fd=new_fd)
                raise FileExistsError(errno.EEXIST, f"{key!r} in {self.location.name!r} "
                                                    "changed: not linked")
            _fsync_dir(new_fd)
        return ObjectInfo(new_key, st.st_size, st.st_mtime_ns, st.st_ino)

    def copy_many_from(self, source: LocalBackend, items: Sequence[CopyItem]
                       ) -> list[WriteResult | Exception]:
        """`copy_from` for many (small) files at once, with the cost of durability paid
        once: every copy is written to its temporary file, one syncfs makes them all
        durable, each is verified and published (never replacing a file), and one more
        syncfs makes the names durable. Per-file fsyncs of files and directories cost more
        than the copies themselves (measured: two thirds of a 10,000-file migration).
        Returns, per item, its WriteResult or the exception that item failed with."""
        results: list[WriteResult | Exception | None] = [None] * len(items)
        written: list[tuple[int, int, str, str]] = []  # (item, dir fd, temp, name)
        dirs: dict[str, int] = {}
        source_dirs: dict[str, int] = {}
        batch = uuid.uuid4().hex[:16]
        try:
            for index, item in enumerate(items):
                try:
                    written.append((index, *self._write_temporary(
                        source, item, dirs, source_dirs, f"{batch}{index:x}")))
                except Exception as exc:
                    results[index] = exc
            try:
                _syncfs(dirs.values())
            except OSError as exc:  # not durable: nothing may be published
                for index, dir_fd, temp, _ in written:
                    _unlink_quietly(temp, dir_fd)
                    results[index] = exc
                return results  # type: ignore[return-value]
            for index, dir_fd, temp, name in written:
                try:
                    results[index] = self._verify_and_publish(items[index], dir_fd, temp, name)
                except Exception as exc:
                    _unlink_quietly(temp, dir_fd)
                    results[index] = exc
            try:
                _syncfs(dirs.values())
            except OSError as exc:  # the names may not last: take them back
                for index, dir_fd, _, name in written:
                    if isinstance(results[index], WriteResult):
                        _unlink_quietly(name, dir_fd)
                        results[index] = exc
        finally:
            for dir_fd in [*dirs.values(), *source_dirs.values()]:
                os.close(dir_fd)
        return results  # type: ignore[return-value]

    def _write_temporary(self, source: LocalBackend, item: CopyItem, dirs: dict[str, int],
                         source_dirs: dict[str, int], temp_tag: str) -> tuple[int, str, str]:
        """Copy `item` into a temporary file beside its final name (not made durable). An
        existing final name is found when publishing (never replaced), not looked for
        first: a migration's targets are new, and a look per file costs as much as the
        copy."""
        check_key(item.key)
        parent_key, _, name = item.key.rpartition("/")
        if parent_key not in dirs:
            dirs[parent_key] = self._open_dir(parent_key, create=True)
        dir_fd = dirs[parent_key]
        source_fd = source._open_file_in(item.key, source_dirs)
        try:
            temp = f"{_temp_prefix(name)}{temp_tag}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                         dir_fd=dir_fd)
            try:
                _copy_range(source_fd, fd)
                _start_writeback(fd)
            except BaseException:
                _unlink_quietly(temp, dir_fd)
                raise
            finally:
                os.close(fd)
        finally:
            os.close(source_fd)
        return dir_fd, temp, name

    def _verify_and_publish(self, item: CopyItem, dir_fd: int, temp: str, name: str
                            ) -> WriteResult:
        stored_fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            stored_hash = hash_fd(stored_fd)
        finally:
            os.close(stored_fd)
        if stored_hash != item.expected_hash:
            raise IntegrityError(f"{item.key!r} in {self.location.name!r}: content hash "
                                 f"{stored_hash} does not match expected {item.expected_hash}")
        return _publish_verified(dir_fd, item.key, temp, name, stored_hash, item.mtime_ns,
                                 _Publish(False, None))

    def _copy_as(self, key: str, new_key: str, expected: ObjectInfo) -> ObjectInfo:
        """`link_as` where hard links are not supported: a verified copy."""
        with self.open_read(key) as stream:
            result = self.write_atomic(new_key, stream, mtime_ns=expected.mtime_ns)
        now = self.stat(key)
        if ((now.size, now.mtime_ns) != (expected.size, expected.mtime_ns)
                or expected.inode not in (None, now.inode)):
            self.delete(new_key)
            raise FileExistsError(errno.EEXIST, f"{key!r} in {self.location.name!r} changed "
                                                "while it was copied: not kept")
        return result.info

    def _write(self, key: str, fill: Callable[[int], str | None], expected_hash: str | None,
               publish: _Publish, mtime_ns: int | None) -> WriteResult:
        check_key(key)
        parent_key, _, name = key.rpartition("/")
        dir_fd = self._open_dir(parent_key, create=True)
        try:
            return self._write_in(dir_fd, key, name, fill, expected_hash, publish, mtime_ns)
        finally:
            os.close(dir_fd)

    def _write_in(self, dir_fd: int, key: str, name: str, fill: Callable[[int], str | None],
                  expected_hash: str | None, publish: _Publish, mtime_ns: int | None
                  ) -> WriteResult:
        """Temp-write with `fill` (returns the hash of what it wrote, or None when it did
        not see the bytes), fsync, verify, publish, fsync the directory."""
        if publish.refuses_any and _exists(name, dir_fd):
            raise FileExistsError(errno.EEXIST, f"{key!r} exists in {self.location.name!r}")
        temp = f"{_temp_prefix(name)}{uuid.uuid4().hex}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                     dir_fd=dir_fd)
        try:
            try:
                written_hash = fill(fd)
                if expected_hash is not None or written_hash is None:
                    stored_hash = _verify_while_syncing(fd, temp, dir_fd)
                    written_hash = written_hash or stored_hash
                    if stored_hash != written_hash or expected_hash not in (None, stored_hash):
                        raise IntegrityError(
                            f"{key!r} in {self.location.name!r}: content hash {stored_hash} "
                            f"does not match expected {expected_hash}")
                else:
                    os.fsync(fd)
            finally:
                os.close(fd)
            result = _publish_verified(dir_fd, key, temp, name, written_hash, mtime_ns,
                                       publish)
            _fsync_dir(dir_fd)
        except BaseException:
            _unlink_quietly(temp, dir_fd)
            raise
        return result

    def delete(self, key: str) -> None:
        self.stat(key)  # refuses directories and links that lead out
        with self._in_parent(key, create=False) as (dir_fd, name):
            # No directory fsync: a delete undone by a crash loses nothing.
            os.unlink(name, dir_fd=dir_fd)

    # -- POSIX operations the mount needs on local replicas ------------------------------

    def open_fd(self, key: str, flags: int) -> int:
        """A descriptor of the regular file at `key`, opened with `flags` (no O_CREAT)."""
        path_fd = self._open_path(key)
        try:
            if not stat_mod.S_ISREG(os.fstat(path_fd).st_mode):
                raise UnsafeKeyError(errno.EACCES, f"{key!r} is not a regular file")
            return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_CLOEXEC)
        finally:
            os.close(path_fd)

    def create_fd(self, key: str, mode: int) -> int:
        """Create the file at `key` (parents as needed) and return a read-write descriptor.
        Fails with FileExistsError if the name is taken."""
        with self._in_parent(key, create=True) as (dir_fd, name):
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode,
                           dir_fd=dir_fd)

    def rename(self, old_key: str, new_key: str) -> None:
        """Rename within this location (replacing a file at `new_key`, as rename(2) does)."""
        check_key(old_key)
        check_key(new_key)
        old_parent, _, old_name = old_key.rpartition("/")
        new_parent, _, new_name = new_key.rpartition("/")
        old_fd = self._open_dir(old_parent, create=False)
        try:
            # Nothing to rename: no directories made for it at the new name either.
            os.stat(old_name, dir_fd=old_fd, follow_symlinks=False)
            new_fd = self._open_dir(new_parent, create=True)
            try:
                os.rename(old_name, new_name, src_dir_fd=old_fd, dst_dir_fd=new_fd)
            finally:
                os.close(new_fd)
        finally:
            os.close(old_fd)

    def link(self, key: str, new_key: str) -> int:
        """A hard link at `new_key` (parents as needed) to the file, link or special file at
        `key` itself (never what a symbolic link points to); returns its st_ino.
        FileExistsError if the name is taken."""
        with self._in_parent(key, create=False) as (old_fd, old_name), \
                self._in_parent(new_key, create=True) as (new_fd, new_name):
            os.link(old_name, new_name, src_dir_fd=old_fd, dst_dir_fd=new_fd,
                    follow_symlinks=False)
            return os.stat(new_name, dir_fd=new_fd, follow_symlinks=False).st_ino

    def linked_inode(self, key: str) -> int | None:
        """The st_ino of what is at `key` itself (not followed), when it has several hard
        links; None otherwise or when nothing is there."""
        try:
            with self._in_parent(key, create=False) as (dir_fd, name):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_ino if st.st_nlink > 1 and not stat_mod.S_ISDIR(st.st_mode) else None

    @contextlib.contextmanager
    def _in_parent(self, key: str, create: bool) -> Iterator[tuple[int, str]]:
        """(checked descriptor of key's parent directory, key's last component)."""
        check_key(key)
        parent_key, _, name = key.rpartition("/")
        dir_fd = self._open_dir(parent_key, create=create)
        try:
            yield dir_fd, name
        finally:
            os.close(dir_fd)

    def make_dir(self, key: str, mode: int, owner: tuple[int, int] | None = None) -> None:
        with self._in_parent(key, create=True) as (dir_fd, name):
            os.mkdir(name, mode, dir_fd=dir_fd)
            if owner is not None:
                os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)

    def remove_dir(self, key: str) -> None:
        """Remove the directory at `key` and the empty directories below it, if that is all
        it holds (such trees are left by copies that did not complete, and a mount shows no
        directory a file of it does not need); OSError ENOTEMPTY if anything else is in
        it, FileNotFoundError if it is not there."""
        with self._in_parent(key, create=False) as (dir_fd, name):
            _remove_empty_tree(name, dir_fd)

    def make_symlink(self, key: str, target: str, owner: tuple[int, int] | None = None
                     ) -> None:
        with self._in_parent(key, create=True) as (dir_fd, name):
            os.symlink(target, name, dir_fd=dir_fd)
            if owner is not None:
                os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)

    def remove_temporaries(self, key: str) -> int:
        """Remove the temporary files interrupted writes of `key` left (a process killed
        mid-copy); returns how many. Only for a caller that knows no write of `key` is
        under way (start-up recovery)."""
        check_key(key)
        parent_key, _, name = key.rpartition("/")
        try:
            dir_fd = self._open_dir(parent_key, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        prefix = _temp_prefix(name)
        removed = 0
        try:
            listing_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                                 dir_fd=dir_fd)
            try:
                names = os.listdir(listing_fd)
            finally:
                os.close(listing_fd)
            for entry in names:
                if entry.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry, dir_fd=dir_fd)
                        removed += 1
        finally:
            os.close(dir_fd)
        return removed

    def make_special(self, key: str, mode: int, rdev: int,
                     owner: tuple[int, int] | None = None) -> None:
        """Make a FIFO, socket or device node (mknod: `mode` holds its type) at `key`."""
        with self._in_parent(key, create=True) as (dir_fd, name):
            os.mknod(name, mode, rdev, dir_fd=dir_fd)
            if owner is not None:
                os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)

    def special_type(self, key: str) -> int | None:
        """The type (S_IFMT) of the symbolic link, FIFO, socket or device at `key`, not
        followed; None when nothing, a regular file or a directory is there."""
        try:
            with self._in_parent(key, create=False) as (dir_fd, name):
                kind = stat_mod.S_IFMT(os.stat(name, dir_fd=dir_fd,
                                               follow_symlinks=False).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return None if kind in (stat_mod.S_IFREG, stat_mod.S_IFDIR) else kind

    def remove_special(self, key: str) -> None:
        """Remove the symbolic link, FIFO, socket or device at `key` itself (never what a
        link points to, never a regular file or a directory)."""
        with self._in_parent(key, create=False) as (dir_fd, name):
            kind = stat_mod.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            if kind in (stat_mod.S_IFREG, stat_mod.S_IFDIR):
                raise UnsafeKeyError(errno.EINVAL, f"{key!r} is not a link or special file")
            os.unlink(name, dir_fd=dir_fd)

    def set_special_attrs(self, key: str, *, mode: int | None = None,
                          times_ns: tuple[int, int] | None = None,
                          owner: tuple[int, int] | None = None) -> None:
        """chmod, utimens and chown of the FIFO, socket or device at `key`, through an O_PATH
        descriptor (opening it for real could block, or act on a device)."""
        with self._in_parent(key, create=False) as (dir_fd, name):
            path_fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            kind = stat_mod.S_IFMT(os.fstat(path_fd).st_mode)
            if kind in (stat_mod.S_IFREG, stat_mod.S_IFDIR, stat_mod.S_IFLNK):
                raise UnsafeKeyError(errno.EINVAL, f"{key!r} is not a special file")
            # The /proc link of an O_PATH descriptor names the inode itself, not a path.
            _set_mode_owner_times(f"/proc/self/fd/{path_fd}", mode, owner, times_ns)
        finally:
            os.close(path_fd)

    def set_attrs(self, key: str, *, mode: int | None = None,
                  times_ns: tuple[int, int] | None = None, size: int | None = None,
                  owner: tuple[int, int] | None = None) -> int:
        """chmod, utimens, truncate and chown of the file at `key`, through a checked
        descriptor. Returns its mtime after them (a truncate stamps the kernel's clock)."""
        fd = self.open_fd(key, os.O_WRONLY if size is not None else os.O_RDONLY)
        try:
            if size is not None:
                os.ftruncate(fd, size)
            _set_mode_owner_times(fd, mode, owner, times_ns)
            return os.fstat(fd).st_mtime_ns
        finally:
            os.close(fd)

    def free_space(self) -> SpaceInfo | None:
        st = os.statvfs(self._real_root())
        return SpaceInfo(free_bytes=st.f_bavail * st.f_frsize,
                         total_bytes=st.f_blocks * st.f_frsize)


def _set_mode_owner_times(target: int | str, mode: int | None,
                          owner: tuple[int, int] | None,
                          times_ns: tuple[int, int] | None) -> None:
    """chmod, chown and utimens of a descriptor or path, each when given."""
    if mode is not None:
        os.chmod(target, mode & 0o7777)
    if owner is not None:
        os.chown(target, *owner)
    if times_ns is not None:
        os.utime(target, ns=times_ns)


def _verify_while_syncing(fd: int, temp: str, dir_fd: int) -> str:
    """Hash what landed in the temporary file `temp` (open for writing at `fd`) while its
    data goes to the disk: a large file's fsync and its hashing overlap (one waits on the
    device, the other reads the page cache), halving the time they take one after the
    other. Returns the hash once both are done."""
    stored_fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if os.fstat(stored_fd).st_size < PARALLEL_HASH_BYTES:
            os.fsync(fd)
            return hash_fd(stored_fd)
        with ThreadPoolExecutor(max_workers=1) as pool:
            synced = pool.submit(os.fsync, fd)
            stored_hash = hash_fd(stored_fd)
            synced.result()
        return stored_hash
    finally:
        os.close(stored_fd)


def _write_chunks(fd: int, data: BinaryIO | Iterable[bytes]) -> str:
    """Write everything `data` yields; returns its hash."""
    hasher = new_hasher()
    for chunk in _chunks(data):
        hasher.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
    return hasher.hexdigest()


def _copy_range(source_fd: int, fd: int) -> None:
    """Copy a whole file between descriptors in the kernel; read and write where the
    filesystem cannot (some network filesystems, old kernels across filesystems)."""
    try:
        while os.copy_file_range(source_fd, fd, 1 << 30):
            pass
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) \
                or os.lseek(fd, 0, os.SEEK_CUR) != 0:
            raise
        while chunk := os.read(source_fd, CHUNK_SIZE):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]


def _chunks(data: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(data, "read"):
        while chunk := data.read(CHUNK_SIZE):
            yield chunk
    else:
        yield from data


def _reopen_regular(path_fd: int, key: str) -> int:
    """A read-only descriptor of the file an O_PATH descriptor names, if a regular file."""
    st = os.fstat(path_fd)
    if stat_mod.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"{key!r} is a directory")
    if not stat_mod.S_ISREG(st.st_mode):
        raise UnsafeKeyError(errno.EACCES, f"{key!r} is not a regular file")
    return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _temp_prefix(name: str) -> str:
    """Temporary files of writes of `name` start with this: tied to the final name (by
    hash: a name may already be 255 bytes long) so that recovery finds a crash's leftovers."""
    return f"{TEMP_PREFIX}{hash_bytes(name.encode())[:16]}-"


@dataclass(frozen=True)
class _Publish:
    """How a verified temporary file takes its name: replacing whatever is there
    (`overwrite`), only the file `replaces` (compare-and-swap), or never replacing."""

    overwrite: bool
    replaces: ObjectInfo | None

    @property
    def refuses_any(self) -> bool:
        return not self.overwrite and self.replaces is None


def _same_file(st: os.stat_result, info: ObjectInfo) -> bool:
    return ((st.st_size, st.st_mtime_ns) == (info.size, info.mtime_ns)
            and info.inode in (None, st.st_ino))


def _publish_verified(dir_fd: int, key: str, temp: str, name: str, content_hash: str,
                      mtime_ns: int | None, publish: _Publish) -> WriteResult:
    """Give the verified temporary file `temp` its final name, with `mtime_ns` kept."""
    if mtime_ns is not None:
        os.utime(temp, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd)
    _publish(dir_fd, temp, name, publish)
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    return WriteResult(ObjectInfo(key, st.st_size, st.st_mtime_ns, st.st_ino), content_hash)


def _publish(dir_fd: int, temp: str, name: str, publish: _Publish) -> None:
    """Rename `temp` to `name`, replacing what `publish` allows; atomically refuse any other
    existing `name` (FileExistsError)."""
    if publish.replaces is not None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None  # gone meanwhile: created, never replacing what appears now
        if st is not None:
            if not stat_mod.S_ISREG(st.st_mode) or not _same_file(st, publish.replaces):
                raise FileExistsError(errno.EEXIST, f"{name} changed since it was last seen: "
                                                    "not replaced")
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
    elif publish.overwrite:
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    if _rename_noreplace(dir_fd, temp, name):
        return
    try:
        # link() fails with EEXIST if the name was taken meanwhile: never a replace.
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"{name} exists") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        # No hard links here (some network filesystems): check, then rename.
        if _exists(name, dir_fd):
            raise FileExistsError(errno.EEXIST, f"{name} exists") from None
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(temp, dir_fd=dir_fd)


_RENAME_NOREPLACE = 1
_rename_noreplace_works = True


def _rename_noreplace(dir_fd: int, temp: str, name: str) -> bool:
    """renameat2(RENAME_NOREPLACE): publish in one step, never replacing (FileExistsError).
    False where the filesystem or the C library cannot (then link and unlink do)."""
    global _rename_noreplace_works
    if not _rename_noreplace_works or not hasattr(_libc, "renameat2"):
        return False
    if _libc.renameat2(dir_fd, os.fsencode(temp), dir_fd, os.fsencode(name),
                       _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, f"{name} exists")
    if code in (errno.EINVAL, errno.ENOSYS):
        _rename_noreplace_works = False
        return False
    raise OSError(code, os.strerror(code), name)


_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing `fd`'s data to the disk now, without waiting for it
    (sync_file_range): the writes of a batch then overlap the reads of the next files
    instead of all waiting for its syncfs. Only a hint: durability is syncfs's job."""
    if hasattr(_libc, "sync_file_range"):
        _libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0),
                              _SYNC_FILE_RANGE_WRITE)


class CopyItem(NamedTuple):
    """One file of `copy_many_from`."""

    key: str
    expected_hash: str
    mtime_ns: int | None = None


def _syncfs(dir_fds: Iterable[int]) -> None:
    """Make everything written to the filesystems holding `dir_fds` (O_PATH descriptors;
    a location may span several) durable: one journal commit each for a whole batch."""
    by_device = {os.fstat(fd).st_dev: fd for fd in dir_fds}
    for dir_fd in by_device.values():
        fd = os.open(f"/proc/self/fd/{dir_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if _libc.syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(fd)


def _remove_empty_tree(name: str, dir_fd: int) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
        return
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), name)
                _remove_empty_tree(entry.name, fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _fsync_dir(dir_fd: int) -> None:
    # An O_PATH descriptor cannot be fsynced: reopen the directory for reading.
    fd = os.open(f"/proc/self/fd/{dir_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
