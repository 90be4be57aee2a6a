"""Host side of the real-GIMP tests and benchmark: install GIMP, install the plug-in with the
project's own installer into a throw-away profile, run batch.py in headless GIMP.

Two GIMP versions, each in its own Debian root file system made by
../shared/gimp3/setup-gimp3.sh (via tests/gimp/setup-gimp.sh): GIMP 3.0.4 (Debian 13, Python
3.13) in .cache/gimp3 and GIMP 3.2.6, the current stable release (Debian sid, Python 3.14), in
.cache/gimp3-sid ($BODYPIX_GIMP3_DIR / $BODYPIX_GIMP32_DIR elsewhere). Every path is
bind-mounted at the same place inside, so the installer's venv (made by the rootfs's Python,
the one GIMP runs plug-ins with) and the plug-in folder are real paths on both sides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = Path(os.environ.get("BODYPIX_SHARED", ROOT.parent / "shared")).resolve()
MODELS = Path(os.environ.get("BODYPIX_MODELS", SHARED / "models")).resolve()
# The plug-in dialog's default values (gimp_plugin/bodypix/procedures.py), as the worker receives them.
PLUGIN_DEFAULTS = {
    "quality": "fast", "refine": True, "fingers": True, "threshold": 0.7, "internal_resolution": "medium",
}
PIP_CACHE = ROOT / ".cache" / "pip-gimp3"
# Env vars of the host that must not leak into GIMP or the installer inside the rootfs.
DROP = ("BODYPIX_MODELS", "PIP_FIND_LINKS", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")


@dataclass(frozen=True)
class GimpRoot:
    """One installed GIMP: its version label ("3.0", "3.2") and setup-gimp3.sh folder."""

    version: str
    dir: Path

    def bin(self, name: str) -> str:
        return str(self.dir / "bin" / name)


# version label -> (env var naming its folder, default folder)
VERSIONS = {
    "3.0": ("BODYPIX_GIMP3_DIR", ROOT / ".cache" / "gimp3"),
    "3.2": ("BODYPIX_GIMP32_DIR", ROOT / ".cache" / "gimp3-sid"),
}
DEFAULT_VERSION = "3.0"


def gimp_root(version: str = DEFAULT_VERSION) -> GimpRoot:
    env, default = VERSIONS[version]
    return GimpRoot(version, Path(os.environ.get(env, default)).resolve())


class HarnessError(RuntimeError):
    pass


_READY: dict[str, GimpRoot] = {}


def ensure_gimp(version: str = DEFAULT_VERSION) -> GimpRoot:
    """Install GIMP ``version`` (first time 2-5 min; afterwards a 10-30 s smoke test, once per
    process), check that its gimp-console really is that version, and return it."""
    if version in _READY:
        return _READY[version]
    g = gimp_root(version)
    t = time.time()
    proc = subprocess.run(["bash", str(HERE / "setup-gimp.sh"), version, str(g.dir)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"GIMP {version} setup failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    found = installed_version(g)
    if not found.startswith(version + "."):
        raise HarnessError(f"{g.dir} holds GIMP {found}, not {version}: point {VERSIONS[version][0]} elsewhere")
    print(f"[gimp] GIMP {found} ready in {time.time() - t:.0f} s", flush=True)
    _READY[version] = g
    return g


def installed_version(g: GimpRoot) -> str:
    """'3.0.4', '3.2.6': what the folder's gimp-console says."""
    out = subprocess.run([g.bin("gimp-console"), "--version"], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"version (\d+\.\d+\.\d+)", out)
    if not m:
        raise HarnessError(f"gimp-console --version in {g.dir} said: {out.strip()[-300:]!r}")
    return m.group(1)


@dataclass
class Install:
    """A throw-away GIMP profile with bodypix-gimp installed into it."""

    work: Path
    gimp: GimpRoot

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
            [self.gimp.bin("gimp3-run"), *cmd],
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
            [self.gimp.bin("gimp-console"), "-i", "-n", "-d", "-f",
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
        version = installed_version(self.gimp)
        # the profile is new to GIMP: without its version in gimprc, GIMP shows "Welcome"
        (self.profile / "gimprc").write_text(f'(config-version "{version}")\n(show-welcome-dialog no)\n')
        # the script's folder on GIMP Python's sys.path: the GUI scripts share gimp_gui.py
        code = f"import sys; sys.path.insert(0, {str(script.parent)!r}); exec(open({str(script)!r}).read())"
        t = time.perf_counter()
        proc = subprocess.run(
            [self.gimp.bin("gimp3-run"), gui_binary(version), "-n", "-s", "-d", "-f",
             "--batch-interpreter", "python-fu-eval", "-b", code, "--quit", *map(str, files)],
            cwd=ROOT, env=self.env(DISPLAY=display, **extra), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        seconds = time.perf_counter() - t
        self.stop_servers()
        return proc, seconds

    def gui_script(self, script: Path, files: list[Path], marker: str, what: str, timeout: float = 600,
                   **extra: str) -> str:  # fmt: skip
        """``gui_batch`` in a fresh VirtualDisplay: the script must end and print ``marker``.
        Keeps GIMP's output as ``work/gimp.log`` and returns it."""
        with VirtualDisplay(self) as display:
            proc, seconds = self.gui_batch(script, files, display, timeout=timeout, **extra)
        log = proc.stdout + proc.stderr
        (self.work / "gimp.log").write_text(log)
        print(f"[gimp] {what} in GIMP {self.gimp.version} with its GUI: {seconds:.0f} s", flush=True)
        assert proc.returncode == 0 and marker in log, log[-4000:]
        return log

    def stop_servers(self) -> None:
        """The plug-in leaves a model server running (idle timeout); stop it after a batch."""
        python = self.data / "venv" / "bin" / "python"
        if python.is_file():
            self.run_inside([str(python), "-m", "bodypix_gimp.worker", "--stop"], timeout=60)


def gui_binary(version: str) -> str:
    """GIMP's GUI binary inside the rootfs: gimp-3.0 on Debian 13, gimp-3.2 on sid."""
    return "gimp-" + ".".join(version.split(".")[:2])


class VirtualDisplay:
    """Xvfb inside the GIMP rootfs (dialog and undo tests); ``with VirtualDisplay(inst) as display:``.

    Xvfb picks a free display number itself and writes it to a pipe once it accepts clients
    (``-displayfd``), so two test runs never collide on a number and nothing sleeps a fixed
    time; ``xdotool getdisplaygeometry`` then proves a client can use it.
    """

    def __init__(self, inst: Install, start_timeout: float = 60) -> None:
        self.inst, self.start_timeout = inst, start_timeout
        self.display = ""
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        import select

        rfd, wfd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [self.inst.gimp.bin("gimp3-run"), "Xvfb", "-displayfd", str(wfd), "-screen", "0", "1280x1024x24",
                 "-nolisten", "tcp"],
                cwd=ROOT, env=self.inst.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(wfd,),
            )  # fmt: skip
        finally:
            os.close(wfd)
        answer = b""
        deadline = time.monotonic() + self.start_timeout
        with os.fdopen(rfd, "rb", buffering=0) as r:
            while not answer.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
                chunk = r.read(64) if ready else b""
                if not chunk:  # Xvfb exited (pipe closed) or the deadline passed
                    break
                answer += chunk
        if not answer.strip().isdigit():
            self.__exit__()
            raise HarnessError(f"Xvfb did not report a display within {self.start_timeout:.0f} s "
                               "(is the xvfb package in the GIMP rootfs?)")  # fmt: skip
        self.display = ":" + answer.decode().strip()
        geometry = self.inst.run_inside(["xdotool", "getdisplaygeometry"], timeout=60, DISPLAY=self.display)
        if geometry.returncode != 0 or geometry.stdout.split() != ["1280", "1024"]:
            self.__exit__()
            raise HarnessError(f"display {self.display} does not answer: {(geometry.stdout + geometry.stderr)[-500:]}")
        return self.display

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


def make_install(work: Path, gimp: GimpRoot | None = None) -> Install:
    """Fresh profile + the project's installer (venv in the rootfs's Python, models copied)."""
    if work.exists():
        shutil.rmtree(work)
    inst = Install(work, gimp or gimp_root())
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
    print(f"[gimp] plug-in installed into GIMP {inst.gimp.version} with installer/install.py in "
          f"{time.time() - t:.0f} s", flush=True)  # fmt: skip
    return inst


def test_versions() -> list[str]:
    """The GIMP versions the tests run on: both, or $BODYPIX_GIMP_VERSIONS (e.g. "3.2")."""
    chosen = [v.strip() for v in os.environ.get("BODYPIX_GIMP_VERSIONS", "").split(",") if v.strip()]
    unknown = set(chosen) - set(VERSIONS)
    if unknown:
        raise HarnessError(f"BODYPIX_GIMP_VERSIONS: unknown {sorted(unknown)}; known: {sorted(VERSIONS)}")
    return chosen or list(VERSIONS)
