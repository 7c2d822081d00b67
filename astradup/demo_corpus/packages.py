"""The Debian packages the demo's real media come from, fetched once into a cache (``apt-get
download`` + ``dpkg -x``: no root needed once the package lists exist), and the external tools run
with a time limit and a clear error."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from astradup.errors import AstraDupError

TOOL_TIMEOUT_S = 300.0  # an external tool's (ffmpeg's) run, unless the caller says otherwise

# Debian packages (about 76 MB of downloads in all): an animated film with narration and a
# piano piece (openboard-common, 11 MB), recorded speech (asterisk-core-sounds-en-wav, 18 MB) and
# nature photographs (mate-backgrounds, 46 MB). The smaller lomiri-wallpapers sets are no
# substitute: their pictures are near-identical purple gradients, which would make unrelated
# videos look like copies of each other.
PACKAGES = ("openboard-common", "asterisk-core-sounds-en-wav", "mate-backgrounds")


class DemoCorpusError(AstraDupError):
    """The corpus could not be built (ffmpeg failed, a package lacks the expected media...)."""


class MediaFetchError(DemoCorpusError):
    """The Debian packages could not be fetched (no network, no apt, unknown package)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "astradup" / "media"


def run_tool(cmd: list[str], cwd: str | Path | None = None,
             timeout: float = TOOL_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _apt_update() -> None:
    try:
        res = run_tool(["apt-get", "update"], timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaFetchError(f"apt-get update failed: {exc}") from exc
    if res.returncode != 0:
        raise MediaFetchError(f"apt-get update failed: {res.stderr.strip()[-500:]}")


def fetch_package(pkg: str, cache_dir: str | Path) -> Path:
    """Return the extracted tree of Debian package ``pkg``, downloading it only once.

    The tree is renamed into place only when complete, so an interrupted fetch never leaves a
    half-extracted package that a later run would trust.
    """
    cache = Path(cache_dir).expanduser()
    root = cache / pkg
    marker = root / ".astradup-complete"
    if marker.exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise MediaFetchError(f"cannot fetch {pkg}: apt-get/dpkg not found (a Debian or Ubuntu "
                              "system is needed to build the demo corpus)")
    cache.mkdir(parents=True, exist_ok=True)
    updated = False
    with tempfile.TemporaryDirectory(prefix=f".{pkg}-", dir=cache) as tmp:
        # apt drops privileges to _apt for the download; let it write here when run as root.
        os.chmod(tmp, 0o777)
        while True:
            try:
                res = run_tool(["apt-get", "download", "-o", "Acquire::Retries=1",
                            "-o", "Acquire::http::Timeout=30", pkg], cwd=tmp, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MediaFetchError(f"apt-get download {pkg} failed: {exc}") from exc
            debs = sorted(Path(tmp).glob(f"{pkg}_*.deb"))
            if res.returncode == 0 and debs:
                break
            # apt's "W: Download is performed unsandboxed" noise hides the real "E:" reason.
            lines = res.stderr.strip().splitlines()
            err = "\n".join([ln for ln in lines if ln.startswith("E:")] or lines)
            stale = ("Unable to locate package" in err or "404" in err
                     or "Can't select" in err or "has no installation candidate" in err)
            if stale and not updated and os.geteuid() == 0:
                _apt_update()  # package lists missing or stale: refresh once, then retry
                updated = True
                continue
            hint = ""
            if stale:
                hint = (" (not found even after apt-get update)" if updated else
                        " (the package lists look missing or stale: run 'sudo apt-get update' "
                        "once, then build again)")
            raise MediaFetchError(f"apt-get download {pkg} failed{hint}: {err[-500:]}")
        deb = debs[-1]
        size = deb.stat().st_size
        tree = Path(tmp) / "tree"
        res = run_tool(["dpkg", "-x", str(deb), str(tree)], timeout=600)
        if res.returncode != 0:
            raise MediaFetchError(f"dpkg -x {deb.name} failed: {res.stderr.strip()[-500:]}")
        (tree / ".astradup-complete").write_text(json.dumps({"deb": deb.name, "size": size}))
        try:
            os.rename(tree, root)
        except OSError:
            if not marker.exists():  # another process won the race only if its tree is whole
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tree, root)
    return root


def package_info(root: Path) -> dict[str, Any]:
    return json.loads((root / ".astradup-complete").read_text())
