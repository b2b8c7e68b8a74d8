"""A directory on a local disk or network mount, holding files at `<root>/<logical path>`."""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from alicefs.backends.base import (
    TEMP_PREFIX,
    Backend,
    IntegrityError,
    LocationUnavailableError,
    ObjectInfo,
    UnsafeKeyError,
    WriteResult,
    check_key,
)
from alicefs.hashing import CHUNK_SIZE, hash_stream, new_hasher
from alicefs.model import StorageLocation
from alicefs.rules import SpaceInfo

# Errors from os.link that mean "this filesystem cannot hard-link", not "the name is taken".
_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class LocalBackend(Backend):
    def __init__(self, location: StorageLocation, *, skip_hidden: bool = True):
        super().__init__(location, skip_hidden=skip_hidden)
        self.root = Path(location.path)

    # -- paths -------------------------------------------------------------------------

    def _real_root(self) -> str:
        try:
            real = os.path.realpath(self.root, strict=True)
        except OSError as exc:
            raise LocationUnavailableError(
                f"location {self.location.name!r}: root {self.root} is not reachable "
                f"({exc.strerror})") from None
        if not os.path.isdir(real):
            raise LocationUnavailableError(
                f"location {self.location.name!r}: root {self.root} is not a directory")
        return real

    def path_of(self, key: str) -> str:
        """The absolute path for `key`, refusing any that resolves outside the root.

        Symbolic links inside the root are followed as long as they stay inside it; a link
        (at any depth) that points out is refused with EACCES.
        """
        check_key(key)
        root = self._real_root()
        full = os.path.join(root, key)
        real = os.path.realpath(full)
        if real != root and not real.startswith(root + os.sep):
            raise UnsafeKeyError(errno.EACCES, f"{key!r} resolves outside location "
                                               f"{self.location.name!r}")
        return full

    def probe(self) -> None:
        root = self._real_root()
        if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
            raise LocationUnavailableError(
                f"location {self.location.name!r}: root {self.root} is not readable and "
                "writable by this user")

    def _is_inside(self, path: str, root: str) -> bool:
        real = os.path.realpath(path)
        return real.startswith(root + os.sep)

    # -- reading -----------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = self._real_root()
        start = root
        if prefix:
            start = self.path_of(prefix.rstrip("/"))
            if not os.path.isdir(start):
                return
        stack = [start]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while listing
            for entry in entries:
                name = entry.name
                if name.startswith(TEMP_PREFIX) or (self.skip_hidden and name.startswith(".")):
                    continue
                try:
                    if entry.is_symlink():
                        # Followed only to a file inside the root; linked directories are not
                        # descended into (no loops, no second path to the same tree).
                        if not self._is_inside(entry.path, root):
                            continue
                        st = os.stat(entry.path)
                        if not stat_mod.S_ISREG(st.st_mode):
                            continue
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                    else:
                        continue  # sockets, fifos, devices
                except FileNotFoundError:
                    continue
                key = os.path.relpath(entry.path, root).replace(os.sep, "/")
                yield ObjectInfo(key, st.st_size, st.st_mtime_ns, inode=st.st_ino)

    def stat(self, key: str) -> ObjectInfo:
        st = os.stat(self.path_of(key))
        if stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{key!r} is a directory")
        return ObjectInfo(key, st.st_size, st.st_mtime_ns, inode=st.st_ino)

    def read(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self.path_of(key), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def open_read(self, key: str) -> BinaryIO:
        return open(self.path_of(key), "rb")

    # -- writing -----------------------------------------------------------------------

    def write_atomic(self, key: str, data: BinaryIO | Iterable[bytes], *,
                     expected_hash: str | None = None, overwrite: bool = False,
                     mtime_ns: int | None = None) -> WriteResult:
        final = self.path_of(key)
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        # makedirs may have walked through a link created meanwhile: check again.
        self.path_of(key)
        if not overwrite and os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, f"{key!r} exists in {self.location.name!r}")
        temp = os.path.join(parent, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        hasher = new_hasher()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            try:
                for chunk in _chunks(data):
                    hasher.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            written_hash = hasher.hexdigest()
            if expected_hash is not None:
                with open(temp, "rb") as stored:
                    stored_hash = hash_stream(stored)
                if stored_hash != expected_hash or written_hash != expected_hash:
                    raise IntegrityError(f"{key!r} in {self.location.name!r}: content hash "
                                         f"{stored_hash} does not match expected {expected_hash}")
            if mtime_ns is not None:
                os.utime(temp, ns=(mtime_ns, mtime_ns))
            _publish(temp, final, overwrite)
            _fsync_dir(parent)
        except BaseException:
            _unlink_quietly(temp)
            raise
        st = os.stat(final)
        return WriteResult(ObjectInfo(key, st.st_size, st.st_mtime_ns, inode=st.st_ino),
                           written_hash)

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(errno.EISDIR, f"{key!r} is a directory")
        os.unlink(path)
        _fsync_dir(os.path.dirname(path))

    def free_space(self) -> SpaceInfo | None:
        st = os.statvfs(self._real_root())
        return SpaceInfo(free_bytes=st.f_bavail * st.f_frsize,
                         total_bytes=st.f_blocks * st.f_frsize)


def _chunks(data: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(data, "read"):
        while chunk := data.read(CHUNK_SIZE):
            yield chunk
    else:
        yield from data


def _publish(temp: str, final: str, overwrite: bool) -> None:
    """Rename `temp` to `final`; without `overwrite`, atomically refuse an existing `final`."""
    if overwrite:
        os.replace(temp, final)
        return
    try:
        os.link(temp, final)  # fails with EEXIST if the name was taken meanwhile: no replace
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"{final} exists") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        # No hard links here (some network filesystems): check, then rename.
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, f"{final} exists") from None
        os.rename(temp, final)
        return
    os.unlink(temp)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
