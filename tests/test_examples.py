"""The scripts in examples/ run as a user runs them (a fresh interpreter, their own temporary
directories), and the example settings file is valid: none of them can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alicefs.config import load_settings
from alicefs.model import LocationType

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize(("script", "says"), [
    ("storage_progress_demo.py", "discovered 500 files in 2 locations"),
    ("auto_migration_demo.py", "migrated: {'moved': 10}"),
    ("sync_tracking_demo.py", "manual: the version chosen: the backup version wins"),
])
def test_an_example_script_runs(script, says, tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert says in result.stdout
    assert "Traceback" not in result.stderr


def test_the_cloud_configuration_example_is_valid():
    settings = load_settings(EXAMPLES / "cloud_storage_config.yaml")
    kinds = [(loc.name, loc.type) for loc in settings.locations]
    assert kinds == [("Fast SSD", LocationType.LOCAL), ("Archive HDD", LocationType.LOCAL),
                     ("S3 Cold Storage", LocationType.S3), ("MinIO at home", LocationType.S3),
                     ("GCS Backup", LocationType.GCS)]
    minio = settings.location("MinIO at home")
    assert minio.config["endpoint_url"] == "https://minio.home.example:9000"
