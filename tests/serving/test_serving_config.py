"""`[serving]` TOML config: defaults, overrides and refusals naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tritium.core.serving.serving_config import ConfigError, ServingConfig, load_serving_config

from tests.conftest import REPO


def write(tmp_path, text):
    path = tmp_path / "serving.toml"
    path.write_text(text)
    return path


def test_defaults_and_file_overrides(tmp_path):
    assert load_serving_config(None) == ServingConfig()
    cfg = load_serving_config(write(tmp_path, "[serving]\nmax_batch_size = 4\npreempt_enabled = true\n"
                                              "scheduler_type = 'round_robin'\n"))
    assert (cfg.max_batch_size, cfg.preempt_enabled, cfg.scheduler_type) == (4, True, "round_robin")
    assert cfg.with_overrides(port=9000, host=None).port == 9000


@pytest.mark.parametrize("text, key", [
    ("[serving]\nmax_batch_sise = 4\n", "max_batch_sise"),
    ("[serving]\nmax_batch_size = 0\n", "max_batch_size"),
    ("[serving]\nmax_queue = '8'\n", "max_queue"),
    ("[serving]\nload_threshold = 1.5\n", "load_threshold"),
    ("[serving]\nscheduler_type = 'fastest'\n", "scheduler_type"),
    ("[serving]\npreempt_enabled = 1\n", "preempt_enabled"),
    ("[serving]\nport = 70000\n", "port"),
    ("[serving\n", "not valid TOML"),
])
def test_bad_files_are_refused_naming_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=key) as err:
        load_serving_config(path)
    assert str(path) in str(err.value)


def test_tritium_serve_reports_a_bad_config_as_a_usage_error(tmp_path):
    path = write(tmp_path, "[serving]\nmax_queue = -1\n")
    proc = subprocess.run([sys.executable, "-m", "tritium.core.cli", "serve", "--config", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "max_queue" in proc.stderr
