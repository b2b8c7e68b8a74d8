"""A mount's options (`-o`), apart from the filesystem's modules: `alicefs mount` checks
them before it starts the mount process."""

from __future__ import annotations

from dataclasses import dataclass

# How long the kernel keeps names and attributes: long, because the mount tells it of every
# change it did not make itself (alicefs.fs.kernel_cache); as long as s3ql's.
CACHE_TIMEOUT = 300.0


@dataclass(frozen=True)
class MountOptions:
    entry_timeout: float = CACHE_TIMEOUT
    attr_timeout: float = CACHE_TIMEOUT
    xattrs: bool = True  # -o noxattr switches them off for pure listing speed
    allow_other: bool = False
