"""docs/guide.md, run as a user follows it: its settings file written where it says, then
every command of its shell blocks in order (the mount included), with HOME pointing at a
temporary home that holds a small library."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from tests.conftest import BIN_DIR
from tests.fs.conftest import require_fuse

GUIDE = Path(__file__).parents[1] / "docs" / "guide.md"
DAY = 86_400


def make_home(home: Path) -> None:
    """A recent render and an older sketch on the SSD, an old clip on the archive."""
    files = {"Pictures/AI-Active/neon-city/renders/hero.png": 0,
             "Pictures/AI-Active/neon-city/renders/old-sketch.png": 60,
             "Archive/AI/neon-city/clips/intro.mp4": 90}
    for rel, age_days in files.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4096))
        then = time.time() - age_days * DAY
        os.utime(path, (then, then))
    settings = re.search(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    config = home / ".config" / "alicefs" / "settings.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(settings)


def commands() -> list[str]:
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), re.S)
            for line in block.splitlines() if line.strip()]


def test_every_command_of_the_user_guide_runs(tmp_path):
    require_fuse()
    home = tmp_path / "home"
    make_home(home)
    env = {**os.environ, "HOME": str(home),
           "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ALICEFS_CONFIG", None)
    outputs = {}
    try:
        for command in commands():
            result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                    env=env, cwd=home, timeout=120)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            assert "Traceback" not in result.stderr, command
            outputs[command] = result.stdout
    finally:
        mountpoint = home / "alice"
        if mountpoint.exists() and os.path.ismount(mountpoint):
            subprocess.run([str(BIN_DIR / "alicefs"), "umount", "--timeout", "30",
                            str(mountpoint)], env=env, capture_output=True)
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
    assert len(outputs) >= 20
    assert "hero.png" in outputs["ls ~/alice/projects/neon-city/renders"]
    assert "neon-city" in outputs["ls ~/alice/types/image"]
    assert '"states"' in outputs["cat ~/alice/.alicefs/sync.json"]
    # The sketch, two months old, went to the archive; the rated render stayed.
    assert (home / "Archive/AI/neon-city/renders/old-sketch.png").exists()
    assert not (home / "Pictures/AI-Active/neon-city/renders/old-sketch.png").exists()
    assert (home / "Pictures/AI-Active/neon-city/renders/hero.png").exists()
