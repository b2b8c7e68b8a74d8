"""`alice`: the user guide's command. `alice storage VERB ...` is `alicefs-ctl VERB ...` (the
same parser, verbs and options), so every command of the guide runs as written."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from alicefs import cli
from alicefs.errors import EXIT_USAGE

USAGE = """usage: alice storage COMMAND [OPTIONS]

The user guide's commands: `alice storage VERB` is `alicefs-ctl VERB` (run
`alice storage --help` for the verbs). The mount is `alicefs mount`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if args[:1] != ["storage"]:
        got = f"got {args[0]!r}" if args else "got nothing"
        sys.stderr.write(f"alice: error: expected `alice storage COMMAND`, {got} "
                         "(see `alice --help`)\n")
        return EXIT_USAGE
    return cli.run(args[1:], stdout=sys.stdout, stderr=sys.stderr, prog="alice storage")


if __name__ == "__main__":
    sys.exit(main())
