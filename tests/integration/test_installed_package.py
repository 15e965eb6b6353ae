"""`pip install` of alp's wheel (not editable) into a fresh venv, then a campaign in an empty directory
outside the repository, with nothing of the checkout on the path."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_installed_wheel_runs_a_campaign_outside_the_repository(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    # The dependencies are this environment's (seen through a .pth file: installing torch and the rest
    # again would download gigabytes); alp itself comes only from its wheel.
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "alp-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([py, "-m", "pip", "uninstall", "-q", "-y", "setuptools"])  # the venv's old one would shadow ours
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)])
    [wheel] = dist.glob("alp-*.whl")
    run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)])
    # from a folder outside the checkout: `python -c` puts the working directory first on the path
    where = run([py, "-c", "import flows, al_core; print(flows.__file__, al_core.__file__)"], cwd=tmp_path).stdout
    assert str(ROOT) not in where and str(site) in where
    assert (site / "flows" / "templates" / "params.yaml").is_file()
    run([py, "-m", "pip", "check"], cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")  # dvc.yaml's stages call `alp`
    alp = str(venv / "bin" / "alp")
    sets = ["model.arch=mlp", "training.epochs=10", "acquisition.batch_size=20", "training.cpu_threads=1"]
    init = run(
        [alp, "init", "ws", "--dataset", "digits", *(x for s in sets for x in ("--set", s))], cwd=outside, env=env
    )
    assert "digits, pool" in init.stdout
    camp = run([alp, "campaign", "ws", "--rounds", "1"], cwd=outside, env=env)
    assert "round-001" in camp.stdout and "Error" not in camp.stdout + camp.stderr
