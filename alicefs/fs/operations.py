"""The pyfuse3 request handlers: every FUSE operation on the namespace and the replicas, one
module per responsibility (lookups, fileio, uploading, placement, creating, removing,
renaming, attributes, metadata; shared state and helpers in base).

Metadata requests (lookup, getattr, readdir, getxattr) are answered from the in-memory
namespace. Data goes to the best replica: local files through descriptors opened in worker
threads, object-store replicas through the backend's ranged reads, and writes to object stores
through a staging file uploaded on release. No handler lets anything but a FUSEError escape:
an OSError becomes its errno, anything else is logged and becomes EIO.
"""

from __future__ import annotations

import trio

from alicefs.fs.attributes import Attributes, DirectoryTimes
from alicefs.fs.creating import Creating
from alicefs.fs.fileio import FileIO
from alicefs.fs.lookups import Lookups
from alicefs.fs.metadata import Metadata
from alicefs.fs.placement import Placement
from alicefs.fs.removing import Removing
from alicefs.fs.renaming import Renaming
from alicefs.fs.uploading import Uploading


class AliceOperations(DirectoryTimes, Lookups, FileIO, Uploading, Placement, Creating,
                      Removing, Renaming, Attributes, Metadata):
    """The filesystem pyfuse3 serves."""

    async def run_background(self) -> None:
        """The workers of the filesystem's own queues, until cancelled: staged uploads,
        re-placement of new files, closing descriptors, sequential readers' streams (needs
        `background`)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.uploads.run, self.upload_staged)
            nursery.start_soon(self.place_new_files)
            nursery.start_soon(self.close_descriptors)
            self._stream_nursery = nursery
