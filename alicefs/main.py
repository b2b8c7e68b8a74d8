"""The `alicefs` command: mount and unmount the filesystem. Administration is `alicefs-ctl`.

    alicefs mount [--config PATH] MOUNTPOINT [--foreground] [--allow-other] [-o OPTIONS]
    alicefs umount MOUNTPOINT
    alicefs CONFIG MOUNTPOINT [-o OPTIONS]      (the form mount(8) uses for fuse.alicefs)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from alicefs import __version__
from alicefs.config import default_config_path, load_settings
from alicefs.errors import EXIT_USAGE, AliceError, ConfigError, UsageError
from alicefs.fs.options import CACHE_TIMEOUT, MountOptions
from alicefs.humanize import human_bytes
from alicefs.mountpoint import check_mountpoint, pid_file

log = logging.getLogger("alicefs")

# Options of -o that alicefs understands; mount(8) adds generic ones we accept and ignore.
_IGNORED_OPTIONS = {"rw", "defaults", "auto", "noauto", "user", "users", "nofail", "_netdev",
                    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime"}


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def parse_mount_options(text: list[str]) -> tuple[MountOptions, dict[str, str]]:
    """-o a,b=c,... -> MountOptions and the remaining recognised options."""
    values: dict[str, str] = {}
    for group in text:
        for item in group.split(","):
            if item:
                key, _, value = item.partition("=")
                values[key.strip()] = value.strip()
    known = {"noxattr", "allow_other", "entry_timeout", "attr_timeout", "config", "debug",
             "foreground"} | _IGNORED_OPTIONS
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"unknown mount option {unknown[0]!r} (known: noxattr, allow_other, "
                         "entry_timeout=SECONDS, attr_timeout=SECONDS, config=PATH)")
    try:
        options = MountOptions(
            entry_timeout=float(values.get("entry_timeout", CACHE_TIMEOUT)),
            attr_timeout=float(values.get("attr_timeout", CACHE_TIMEOUT)),
            xattrs="noxattr" not in values,
            allow_other="allow_other" in values,
        )
    except ValueError as exc:
        raise UsageError(f"bad mount option value: {exc}") from None
    return options, values


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="alicefs", description=(
        "alicefs merges local, S3 and GCS storage locations into one media library. "
        "Administer locations with alicefs-ctl."))
    parser.add_argument("--version", action="version", version=f"alicefs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    mount = sub.add_parser("mount", help="mount the library at MOUNTPOINT")
    mount.add_argument("mountpoint", metavar="MOUNTPOINT", type=Path)
    mount.add_argument("--config", metavar="PATH", type=Path,
                       help="settings.yaml (default: $ALICEFS_CONFIG, else "
                            "~/.config/alicefs/settings.yaml)")
    mount.add_argument("--foreground", "-f", action="store_true",
                       help="stay in the foreground and log to stderr")
    mount.add_argument("--allow-other", action="store_true",
                       help="let other users access the mount (needs user_allow_other in "
                            "/etc/fuse.conf when not root)")
    mount.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS",
                       help="noxattr, allow_other, entry_timeout=S, attr_timeout=S")
    mount.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    umount = sub.add_parser("umount", help="finish pending work, then unmount")
    umount.add_argument("mountpoint", metavar="MOUNTPOINT", type=Path)
    umount.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="wait at most this long for staged files to be uploaded, then "
                             "unmount and leave the rest staged for the next mount (default: "
                             "wait until they are)")
    umount.add_argument("--lazy", action="store_true",
                        help="unmount now; staged files not yet uploaded stay staged and "
                             "are uploaded at the next mount")
    return parser


def _mount_helper_argv(argv: list[str]) -> list[str]:
    """`alicefs CONFIG MOUNTPOINT -o opts` (how mount.fuse3 calls a fuse.TYPE program)
    becomes `alicefs mount --config CONFIG MOUNTPOINT -o opts`."""
    if len(argv) >= 2 and argv[0] not in ("mount", "umount") and not argv[0].startswith("-"):
        return ["mount", "--config", argv[0], argv[1], *argv[2:]]
    return argv


def cmd_mount(args: argparse.Namespace, ready_fd: int | None) -> int:
    """Mount. `ready_fd` is set in the child process of a background mount: it reports
    "ready" (or the error) to the parent through it, and logs to state_dir/alicefs.log."""
    options, values = parse_mount_options(args.options)
    config = args.config or (Path(values["config"]) if values.get("config")
                             else default_config_path())
    settings = load_settings(config)
    mountpoint = args.mountpoint.absolute()
    check_mountpoint(mountpoint)
    if args.allow_other:
        options = MountOptions(options.entry_timeout, options.attr_timeout, options.xattrs, True)
    if not args.foreground:
        return _start_in_background(args, config, mountpoint, settings.state_dir)
    # Only the process that serves the mount imports its modules (trio, pyfuse3, DuckDB and
    # the filesystem's own: ~0.35 s), not the one that starts it in the background.
    import trio

    from alicefs.daemon import Mount, configure_logging

    configure_logging(args.debug or "debug" in values,
                      settings.state_dir / "alicefs.log" if ready_fd is not None else None)
    pids = pid_file(mountpoint)

    def ready() -> None:
        pids.write_text(f"{os.getpid()}\n")
        log.info("mounted %s at %s", config, mountpoint)
        if ready_fd is not None:
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
            args.ready_reported = True

    try:
        trio.run(Mount(settings, mountpoint, options).run, ready)
    finally:
        pids.unlink(missing_ok=True)
    return 0


def _start_in_background(args: argparse.Namespace, config: Path, mountpoint: Path,
                         state_dir: Path) -> int:
    """Run the mount as a child process in the foreground mode and return once it is
    mounted, or with its error."""
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "alicefs.main", "mount", "--foreground", "--config",
            str(config), str(mountpoint)]
    argv += [f"-o{o}" for o in args.options]
    if args.allow_other:
        argv.append("--allow-other")
    if args.debug:
        argv.append("--debug")
    env = dict(os.environ, ALICEFS_READY_FD=str(write_end))
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "alicefs.log", "ab") as log_output:
        proc = subprocess.Popen(argv, env=env, pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                                stdout=log_output, stderr=log_output, start_new_session=True)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        message = ready.read().decode(errors="replace").strip()
    if message == "ready":
        return 0
    returncode = proc.wait()
    sys.stderr.write((message or f"alicefs: error: mount failed (exit {returncode}); see "
                      f"{state_dir / 'alicefs.log'}") + "\n")
    return returncode or 1


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint = args.mountpoint.absolute()
    pids = pid_file(mountpoint)
    try:
        pid = int(pids.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        # No alicefs process of ours serves it (or it died): a plain FUSE unmount.
        result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise AliceError(f"{mountpoint} is not an alicefs mount of this user "
                             f"({result.stderr.strip()})") from None
        return 0
    return _wait_for_exit(pid, mountpoint, 0.0 if args.lazy else args.timeout)


def _wait_for_exit(pid: int, mountpoint: Path, timeout: float | None) -> int:
    """Wait for the mount process to finish its uploads and exit, saying what it waits for;
    after `timeout` seconds tell it to leave the rest staged (SIGUSR1) and say what."""
    status = mountpoint / ".alicefs" / "queue.json"
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting: dict = {}
    gave_up = False
    last_said = ""
    while _alive(pid):
        with contextlib.suppress(OSError, ValueError):
            waiting = json.loads(status.read_text())
        said = _waiting_for(waiting)
        if said and said != last_said:
            sys.stderr.write(f"alicefs: {said}\n")
            last_said = said
        if deadline is not None and time.monotonic() >= deadline and not gave_up:
            os.kill(pid, signal.SIGUSR1)
            gave_up = True
        time.sleep(0.2)
    left = waiting.get("uploads", []) if gave_up else []
    if left:
        sys.stderr.write(f"alicefs: unmounted with {len(left)} file(s) not uploaded yet; they "
                         "stay staged and are uploaded at the next mount:\n")
        for upload in left:
            sys.stderr.write(f"  {upload['path']}" + (f" (last error: {upload['error']})"
                                                     if upload.get("error") else "") + "\n")
        return 0 if timeout == 0 else 1
    return 0


def _alive(pid: int) -> bool:
    """Whether the process runs (an exited one its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def _waiting_for(queue: dict) -> str:
    uploads = queue.get("uploads") or []
    if not uploads:
        return ""
    size = sum(u.get("bytes") or 0 for u in uploads)
    failing = [u for u in uploads if u.get("error")]
    text = f"waiting for {len(uploads)} upload(s), {human_bytes(size)}"
    if failing:
        text += (f"; {len(failing)} failing, retried (last error: {failing[0]['error']}); "
                 "`alicefs umount --lazy` leaves them staged for the next mount")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_mount_helper_argv(list(
        sys.argv[1:] if argv is None else argv)))
    ready_text = os.environ.pop("ALICEFS_READY_FD", None)
    ready_fd = int(ready_text) if ready_text else None
    try:
        return cmd_mount(args, ready_fd) if args.command == "mount" else cmd_umount(args)
    except ConfigError as exc:
        message = "\n".join(str(problem) for problem in exc.problems)
        code = exc.exit_code
    except AliceError as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        message, code = f"alicefs: error: {exc}", exc.exit_code
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(message + "\n")
    if ready_fd is not None and not getattr(args, "ready_reported", False):
        os.write(ready_fd, message.encode())
    return code


if __name__ == "__main__":
    sys.exit(main())
