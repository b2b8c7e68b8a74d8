"""alicefs-ctl with S3 and GCS locations, against the real servers of tests/servers.py."""

from __future__ import annotations

import json
import os

from tests.servers import S3_REGION, free_ports


def test_list_check_reports_each_location(ctl, write_config, s3_server, s3_bucket, gcs_server,
                                          gcs_bucket, tmp_path):
    (tmp_path / "disk").mkdir()
    dead_port = free_ports(1)[0]
    config = write_config(f"""\
        storage:
          locations:
            - {{name: disk, path: {tmp_path / "disk"}, priority: 90}}
            - name: seaweed
              type: s3
              path: {s3_bucket}
              priority: 50
              config:
                endpoint_url: {s3_server.endpoint_url}
                region: {S3_REGION}
                prefix: check/
                aws_access_key_id: {s3_server.access_key}
                aws_secret_access_key: {s3_server.secret_key}
            - name: wrong-key
              type: s3
              path: {s3_bucket}
              priority: 40
              config:
                endpoint_url: {s3_server.endpoint_url}
                region: {S3_REGION}
                prefix: other/
                aws_access_key_id: {s3_server.access_key}
                aws_secret_access_key: not-the-secret-at-all
            - name: nowhere
              type: s3
              path: some-bucket
              priority: 30
              config:
                endpoint_url: http://127.0.0.1:{dead_port}
                aws_access_key_id: k
                aws_secret_access_key: s
                retry_deadline: 2
            - {{name: gcs, type: gcs, path: {gcs_bucket}, priority: 20}}
    """)
    env = dict(os.environ, STORAGE_EMULATOR_HOST=gcs_server.host_url)
    assert ctl("from-config", config=config, env=env).returncode == 0
    plain = json.loads(ctl("list", "--json", config=config, env=env).stdout)
    assert {loc["name"]: loc["reachable"] for loc in plain}["seaweed"] == "unchecked"
    result = ctl("list", "--check", "--json", config=config, env=env)
    assert result.returncode == 1
    reach = {loc["name"]: loc["reachable"] for loc in json.loads(result.stdout)}
    assert reach["disk"] == reach["seaweed"] == reach["gcs"] == "reachable"
    assert reach["wrong-key"].startswith("offline:") and "wrong-key" in reach["wrong-key"]
    assert reach["nowhere"].startswith("offline:")
    everything = result.stdout + result.stderr
    assert s3_server.secret_key not in everything and "not-the-secret-at-all" not in everything
