"""The mount's tree (DESIGN.md §3) and how its paths map to logical paths."""

from __future__ import annotations

import posixpath
from datetime import datetime

from alicefs.scan import UNSORTED

PROJECTS = "projects"  # projects/<logical path>
TYPES = "types"  # types/<category>/<logical path>
LOCATIONS = "locations"  # locations/<location name>/<logical path>
STATUS_DIR = ".alicefs"  # read-only JSON status files


def logical_candidates(parts: list[str]) -> list[str]:
    """Logical paths a path inside the mount (split into components below the mount point)
    may stand for, most likely first. Files at a location's root show up under
    `projects/_unsorted/`, so `projects/_unsorted/x.png` is either the root file `x.png` or the
    file `x.png` of a folder really named `_unsorted`."""
    if len(parts) >= 2 and parts[0] == PROJECTS:
        rest = parts[1:]
    elif len(parts) >= 3 and parts[0] in (TYPES, LOCATIONS):
        rest = parts[2:]
    else:
        return []
    if rest[0] == UNSORTED and len(rest) >= 2:
        return ["/".join(rest[1:]), "/".join(rest)]
    return ["/".join(rest)]


def conflict_name(logical_path: str, when: datetime, location_name: str, attempt: int = 0
                  ) -> str:
    """Where the losing side of a conflict is kept (DESIGN.md §6):
    `<name>.conflict-<yyyymmdd>-<hhmmss>-<location><ext>` beside the file, `-2`, `-3`...
    when taken."""
    directory, name = posixpath.split(logical_path)
    stem, ext = posixpath.splitext(name)  # ".env" is all stem
    counter = f"-{attempt + 1}" if attempt else ""
    safe_location = location_name.replace("/", "_")
    name = f"{stem}.conflict-{when:%Y%m%d-%H%M%S}-{safe_location}{counter}{ext}"
    return posixpath.join(directory, name) if directory else name
