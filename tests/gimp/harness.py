"""Host side of the real-GIMP tests and benchmark: install GIMP, install the plug-in with the
project's own installer into a throw-away profile, run batch.py in headless GIMP.

GIMP runs in the Debian 13 rootfs made by ../shared/gimp3/setup-gimp3.sh (via
tests/gimp/setup-gimp.sh); every path is bind-mounted at the same place inside, so the
installer's venv (made by the rootfs's Python 3.13, the one GIMP runs plug-ins with) and the
plug-in folder are real paths on both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = Path(os.environ.get("BODYPIX_SHARED", ROOT.parent / "shared")).resolve()
MODELS = Path(os.environ.get("BODYPIX_MODELS", SHARED / "models")).resolve()
# The plug-in dialog's default values (gimp_plugin/bodypix/bodypix.py), as the worker receives them.
PLUGIN_DEFAULTS = {
    "quality": "fast", "refine": True, "fingers": True, "threshold": 0.7, "internal_resolution": "medium",
}
GIMP3 = Path(os.environ.get("BODYPIX_GIMP3_DIR", ROOT / ".cache" / "gimp3")).resolve()
PIP_CACHE = ROOT / ".cache" / "pip-gimp3"
# Env vars of the host that must not leak into GIMP or the installer inside the rootfs.
DROP = ("BODYPIX_MODELS", "PIP_FIND_LINKS", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")


class HarnessError(RuntimeError):
    pass


def ensure_gimp() -> Path:
    """Install GIMP 3 (first time 2-3 min; afterwards an 8 s smoke test) and return its folder."""
    t = time.time()
    proc = subprocess.run(["bash", str(HERE / "setup-gimp.sh"), str(GIMP3)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError("GIMP 3 setup failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    print(f"[gimp] GIMP 3 ready in {time.time() - t:.0f} s", flush=True)
    return GIMP3


@dataclass
class Install:
    """A throw-away GIMP profile with bodypix-gimp installed into it."""

    work: Path

    @property
    def profile(self) -> Path:
        return self.work / "profile"

    @property
    def plugin_dir(self) -> Path:
        return self.profile / "plug-ins" / "bodypix"

    @property
    def data(self) -> Path:
        return self.work / "data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROP}
        binds = [str(SHARED), str(MODELS), str(self.work), str(ROOT)]
        env.update(
            GIMP3_BIND=":".join(dict.fromkeys(binds)),
            GIMP3_DIRECTORY=str(self.profile),
            HOME=str(self.work / "home"),
            PIP_CACHE_DIR=str(PIP_CACHE),
            **extra,
        )
        return env

    def run_inside(self, cmd: list[str], timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
        """Run a command inside the GIMP rootfs (cwd = repo root, bound at the same path)."""
        return subprocess.run(
            [str(GIMP3 / "bin" / "gimp3-run"), *cmd],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def installer(self, *args: str) -> subprocess.CompletedProcess:
        return self.run_inside(
            [
                "python3",
                str(ROOT / "installer" / "install.py"),
                "--plugin-dir",
                str(self.profile / "plug-ins"),
                "--data-dir",
                str(self.data),
                *args,
            ]
        )

    def batch(self, plan: dict, timeout: float = 1800, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
        """Run tests/gimp/batch.py with ``plan`` in one headless GIMP session."""
        plan = dict(plan, plugin_dir=str(self.plugin_dir))
        plan_path = self.work / f"plan-{time.time_ns()}.json"
        plan_path.write_text(json.dumps(plan))
        code = f"exec(open({str(HERE / 'batch.py')!r}).read())"
        t = time.perf_counter()
        proc = subprocess.run(
            [str(GIMP3 / "bin" / "gimp-console"), "-i", "-n", "-d", "-f",
             "--batch-interpreter", "python-fu-eval", "-b", code, "--quit"],
            cwd=ROOT, env=self.env(BODYPIX_GIMP_PLAN=str(plan_path), **extra), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        seconds = time.perf_counter() - t
        self.stop_servers()
        return proc, seconds

    def gui_batch(self, script: Path, files: list[Path], display: str, timeout: float = 600,
                  **extra: str) -> tuple[subprocess.CompletedProcess, float]:  # fmt: skip
        """Run ``script`` in GIMP *with its GUI* on ``display`` (a VirtualDisplay), ``files``
        opened from the command line first, as a user opens them (undo enabled, clean)."""
        version = self.run_inside(["gimp-console-3.0", "--version"], timeout=60).stdout.split()[-1]
        # the profile is new to GIMP: without its version in gimprc, GIMP shows "Welcome"
        (self.profile / "gimprc").write_text(f'(config-version "{version}")\n(show-welcome-dialog no)\n')
        code = f"exec(open({str(script)!r}).read())"
        t = time.perf_counter()
        proc = subprocess.run(
            [str(GIMP3 / "bin" / "gimp3-run"), "gimp-3.0", "-n", "-s", "-d", "-f",
             "--batch-interpreter", "python-fu-eval", "-b", code, "--quit", *map(str, files)],
            cwd=ROOT, env=self.env(DISPLAY=display, **extra), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        seconds = time.perf_counter() - t
        self.stop_servers()
        return proc, seconds

    def stop_servers(self) -> None:
        """The plug-in leaves a model server running (idle timeout); stop it after a batch."""
        python = self.data / "venv" / "bin" / "python"
        if python.is_file():
            self.run_inside([str(python), "-m", "bodypix_gimp.worker", "--stop"], timeout=60)


class VirtualDisplay:
    """Xvfb inside the GIMP rootfs (for the dialog test); ``with VirtualDisplay(inst) as display:``."""

    def __init__(self, inst: Install, number: int = 99) -> None:
        self.inst, self.display = inst, f":{number}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        self.proc = subprocess.Popen([str(GIMP3 / "bin" / "gimp3-run"), "Xvfb", self.display, "-screen", "0",
                                      "1280x1024x24", "-nolisten", "tcp"], cwd=ROOT, env=self.inst.env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(2)
        if self.proc.poll() is not None:
            raise HarnessError("Xvfb did not start (is the xvfb package in the GIMP rootfs?)")
        return self.display

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def make_install(work: Path) -> Install:
    """Fresh profile + the project's installer (venv in the rootfs's Python, models copied)."""
    if work.exists():
        shutil.rmtree(work)
    inst = Install(work)
    (work / "home").mkdir(parents=True)
    # Debian's GIMP starts .py plug-ins through "#!/usr/bin/env python3" (the first python3 on
    # PATH); pin GIMP's own Python so an activated venv on the host cannot break the run.
    interp = inst.profile / "interpreters"
    interp.mkdir(parents=True)
    (interp / "pin-python.interp").write_text(
        "python=/usr/bin/python3\npython3=/usr/bin/python3\n/usr/bin/python3=/usr/bin/python3\n:Python:E::py::python3:\n"
    )
    t = time.time()
    proc = inst.installer("--models-from", str(MODELS))
    if proc.returncode != 0:
        raise HarnessError(f"installer failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    print(f"[gimp] plug-in installed with installer/install.py in {time.time() - t:.0f} s", flush=True)
    return inst
