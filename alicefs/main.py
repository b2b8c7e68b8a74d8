"""The `alicefs` command: the filesystem itself. Administration is `alicefs-ctl`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alicefs import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alicefs",
        description="alicefs merges local, S3 and GCS storage locations into one media "
                    "library. Administer locations with alicefs-ctl.")
    parser.add_argument("--version", action="version", version=f"alicefs {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
