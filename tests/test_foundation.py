"""The set-up a new user relies on: pins agree, the Makefile and CI run what the README says."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_environment_yml_pins_agree_with_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    pins = _constraints()
    assert len(pip) >= 15
    for entry in pip:
        name, version = entry.split("==")
        assert pins[name.lower().replace("_", "-")] == version, name
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_pyproject_uses_lower_bounds_that_admit_gpu_machine_torch():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.11"' in text and '"torchvision>=0.26"' in text
    assert "==" not in re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)


def test_ci_runs_exactly_the_readme_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [
        ln
        for ln in ci.splitlines()
        if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))
    ]
    assert commands == ["make test"]
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


def test_makefile_targets_and_stamp():
    mk = (ROOT / "Makefile").read_text()
    for target in ("reproduce:", "test:", "lab:", "bench:", "lint:"):
        assert target in mk
    assert "$(STAMP): pyproject.toml $(CONSTRAINTS)" in mk
