"""A wheel built from the repository serves the tab from a fresh venv.

Builds the wheel, checks that it carries the frontend, installs it into a
new virtual environment (pip fetches TensorBoard and NumPy, the wheel's own
dependencies: no TensorFlow is needed to serve the tab), starts that venv's
`tensorboard` on a logdir written by the real callback, and fetches the
plugin listing, the frontend module and a data route.
"""

import json
import os
import subprocess
import sys
import urllib.request
import venv
import zipfile

import pytest

from tests import browser_harness
from tests import logdirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTEND = os.path.join(ROOT, "tb_gradients", "frontend")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out), ROOT],
                   check=True, cwd=ROOT, timeout=600)
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return out / wheels[0]


def test_wheel_carries_the_frontend_and_the_entry_point(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = [n for n in names if n.endswith("entry_points.txt")]
        text = archive.read(entry_points[0]).decode()
    expected = {"tb_gradients/frontend/" + os.path.relpath(
                    os.path.join(folder, f), FRONTEND).replace(os.sep, "/")
                for folder, _, files in os.walk(FRONTEND) for f in files
                if f.endswith((".js", ".css"))}
    assert "tb_gradients/frontend/lib/charts.js" in expected
    assert "tb_gradients/frontend/index.js" in expected
    assert expected <= names
    assert "gradients = tb_gradients.plugin:GradientsLoader" in text
    assert not any(n.startswith("tests/") for n in names)


def test_fresh_venv_serves_the_tab(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)],
                   check=True, timeout=900)
    logdir = tmp_path / "logs"
    logdirs.train_mlp_run(logdir / "mlp", epochs=2, source="training")
    port = browser_harness.free_port()
    log_path = tmp_path / "tensorboard.log"
    clean_env = {k: v for k, v in os.environ.items()
                 if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(env_dir / "bin" / "tensorboard"), "--logdir", str(logdir),
             "--port", str(port), "--load_fast=false"],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path),
            env=clean_env)
    base = f"http://127.0.0.1:{port}"
    try:
        runs = browser_harness.wait_for_runs(process, base, {"mlp/train": 2},
                                             log_path)
        assert [r["run"] for r in runs] == ["mlp/train"]
        listing = browser_harness.get_json(
            base + "/data/plugins_listing")["gradients"]
        assert listing["enabled"]
        assert listing["tab_name"] == "Gradients"
        with urllib.request.urlopen(
                base + "/data/plugin/gradients/index.js", timeout=30) as answer:
            assert "text/javascript" in answer.headers["Content-Type"]
            assert b"export" in answer.read()
        # the installed package, not this checkout, answered
        where = subprocess.run(
            [str(python), "-c", "import tb_gradients, os; "
             "print(os.path.dirname(tb_gradients.__file__))"],
            capture_output=True, text=True, check=True, cwd=str(tmp_path),
            env=clean_env).stdout.strip()
        assert where.startswith(str(env_dir))
        # the findings command needs no TensorFlow either
        diagnosed = subprocess.run(
            [str(python), "-m", "tb_gradients.diagnose", str(logdir),
             "--json"], capture_output=True, text=True, cwd=str(tmp_path),
            env=clean_env, timeout=300)
        assert diagnosed.returncode in (0, 1), diagnosed.stderr
        assert [r["run"] for r in json.loads(diagnosed.stdout)["runs"]] == [
            "mlp/train"]
        assert subprocess.run(
            [str(python), "-c", "import tensorflow"], capture_output=True,
            cwd=str(tmp_path), env=clean_env).returncode != 0
    finally:
        browser_harness.stop_process(process)
