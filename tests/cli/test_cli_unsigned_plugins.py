"""`tritium serve` in a source checkout refuses the unsigned builtin plugins with a clear error."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_serve_without_the_development_switch_names_the_missing_signature():
    env = {k: v for k, v in os.environ.items() if k != "TRITIUM_ALLOW_UNSIGNED_PLUGINS"}
    proc = subprocess.run([sys.executable, "-m", "tritium.core.cli", "serve", "--port", "0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "missing signature" in proc.stderr and "TRITIUM_ALLOW_UNSIGNED_PLUGINS=1" in proc.stderr
    assert "Traceback" not in proc.stderr
