#!/usr/bin/env python3
"""Install bodypix-gimp for the current user: environment, models, GIMP 3 plug-in.

    python installer/install.py                       # the usual case
    python installer/install.py --models-from DIR     # offline: models from a folder like shared/models
    python installer/install.py --check               # what is installed, will GIMP find it
    python installer/install.py --uninstall           # remove everything this installed

Steps (each safe to repeat):
1. a virtual environment in the per-user data folder with this project (onnxruntime, numpy,
   pillow, opencv) installed into it;
2. the models into the per-user models folder the core looks in (from --models-from, or
   downloaded and converted by ``bodypix_gimp.setup.install`` where that exists);
3. the plug-in folder ``plug-ins/bodypix/`` with ``bodypix.py`` executable and a
   ``bodypix-config.json`` that names the environment's Python and the models folder.
A record of every file and folder made goes to ``<data>/install-record.json``;
``--uninstall`` removes exactly those.

Standard library only: this runs with whatever Python the user has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paths  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SRC = ROOT / "gimp_plugin" / paths.PLUGIN_NAME
CONFIG_NAME = "bodypix-config.json"
RECORD_NAME = "install-record.json"
MIN_PYTHON = (3, 10)


class InstallError(Exception):
    """One-line reason the install cannot go on."""


def say(msg: str) -> None:
    print(f"[bodypix-gimp] {msg}", flush=True)


def run(cmd: list[str], what: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise InstallError(f"{what} failed (exit {proc.returncode}):\n{tail}")


# ----------------------------------------------------------------------------- layout ---
class Layout:
    """Every path this install touches, from the options and the platform."""

    def __init__(
        self,
        args: argparse.Namespace,
        platform: str = sys.platform,
        env: dict[str, str] | None = None,
        home: str | None = None,
    ) -> None:
        env = dict(os.environ) if env is None else env
        home = home or str(Path.home())
        self.platform = platform
        if args.plugin_dir:
            self.plugin_root = Path(args.plugin_dir).expanduser().resolve()
            self.profile_kind = (
                "flatpak" if f"/{paths.FLATPAK_ID}/" in self.plugin_root.as_posix() else "native"
            )
        else:
            profile = paths.default_profile(platform, env, home)
            self.plugin_root = paths.as_path(profile.plugin_dir)
            self.profile_kind = profile.kind
        self.plugin_dir = self.plugin_root / paths.PLUGIN_NAME
        self.data = (
            Path(args.data_dir).expanduser().resolve()
            if args.data_dir
            else paths.as_path(paths.data_dir(platform, env, home))
        )
        self.venv = self.data / "venv"
        self.python = paths.as_path(paths.venv_python(self.venv, platform))
        self.models = self.data / "models"
        self.record = self.data / RECORD_NAME
        self.gimp_profiles = [paths.as_path(p.plugin_dir) for p in paths.find_profiles(platform, env, home)]


def load_record(layout: Layout) -> dict:
    if layout.record.is_file():
        return json.loads(layout.record.read_text())
    return {"files": [], "dirs": []}


def save_record(layout: Layout, record: dict) -> None:
    record["files"] = sorted(set(record["files"]))
    record["dirs"] = sorted(set(record["dirs"]))
    layout.data.mkdir(parents=True, exist_ok=True)
    tmp = layout.record.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(layout.record)


def makedirs(path: Path, record: dict) -> None:
    """mkdir -p, recording each folder it creates (so uninstall removes only those)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        record["dirs"].append(str(d))


# ---------------------------------------------------------------------------- steps ---
def install_env(layout: Layout, record: dict, editable: bool = False) -> None:
    """Venv with the project (and so onnxruntime, numpy, pillow, opencv) installed."""
    if sys.version_info < MIN_PYTHON:
        raise InstallError(
            f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed, this is {sys.version.split()[0]}"
        )
    makedirs(layout.data, record)
    if not layout.python.is_file():
        say(f"creating the Python environment in {layout.venv}")
        run([sys.executable, "-m", "venv", str(layout.venv)], "python -m venv")
    record["dirs"].append(str(layout.venv))
    say("installing bodypix-gimp and its libraries into it (onnxruntime, numpy, pillow, opencv, onnx)")
    # [convert] brings the onnx package: converting the downloaded official TF.js weights needs it.
    spec = f"{ROOT}[convert]"
    target = ["-e", spec] if editable else [spec]
    run(
        [str(layout.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *target],
        "pip install",
    )
    run(
        [str(layout.python), "-c", "import bodypix_gimp.worker, onnxruntime"],
        "importing the installed package",
    )


SETUP_MODELS = r"""
import json, sys
from bodypix_gimp.setup.install import install
def progress(fraction, message):
    print(f"[bodypix-gimp]   models {fraction * 100:3.0f}% {message}", flush=True)
res = install(sys.argv[1], models_from=sys.argv[2] or None, progress=progress)
print("RESULT " + json.dumps({"installed": sorted(res.installed), "notes": res.notes}))
"""


def install_models(layout: Layout, record: dict, models_from: str | None) -> None:
    """Models into the per-user folder with the core's ``bodypix_gimp.setup.install.install``.

    From ``--models-from`` (copied, checksums verified) or, without it, downloaded from the
    official locations and converted to ONNX.  It is all-or-nothing, so a failure leaves
    the folder as it was.
    """
    if models_from and not (Path(models_from).expanduser() / "bodypix").is_dir():
        raise InstallError(f"no BodyPix models in {models_from}/bodypix; is it laid out like shared/models?")
    makedirs(layout.models, record)
    dirs_before = {d for d in layout.models.rglob("*") if d.is_dir()}
    say("setting up models " + (f"from {models_from}" if models_from else "(download and convert)"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    proc = subprocess.run(
        [str(layout.python), "-c", SETUP_MODELS, str(layout.models), str(models_from or "")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    result = [json.loads(x[7:]) for x in lines if x.startswith("RESULT ")]
    if proc.returncode != 0 or not result:
        raise InstallError("model setup failed: " + (lines[-1] if lines else f"exit {proc.returncode}"))
    record["files"] += [str(layout.models / rel) for rel in result[0]["installed"] + ["checksums.json"]]
    record["dirs"] += [str(d) for d in layout.models.rglob("*") if d.is_dir() and d not in dirs_before]
    for note in result[0]["notes"]:
        say("  note: " + note)
    say(f"{len(result[0]['installed'])} model files in {layout.models}")


def install_plugin(layout: Layout, record: dict, with_models: bool) -> None:
    """plug-ins/bodypix/: the plug-in files, bodypix.py executable, and the config it reads."""
    makedirs(layout.plugin_dir, record)
    for f in sorted(PLUGIN_SRC.glob("*.py")):
        dst = layout.plugin_dir / f.name
        shutil.copyfile(f, dst)
        record["files"].append(str(dst))
    main = layout.plugin_dir / f"{paths.PLUGIN_NAME}.py"
    main.chmod(main.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    config = {
        "python": str(layout.python),
        "models": str(layout.models) if with_models else None,
        "launcher": paths.worker_launcher(layout.profile_kind),
        "source": str(ROOT),
    }
    cfg = layout.plugin_dir / CONFIG_NAME
    cfg.write_text(json.dumps(config, indent=1))
    record["files"].append(str(cfg))
    record["plugin_dir"] = str(layout.plugin_dir)
    say(f"plug-in installed in {layout.plugin_dir}")


def install(layout: Layout, args: argparse.Namespace) -> int:
    record = load_record(layout)
    try:
        install_env(layout, record, editable=args.editable)
        if not args.no_models:
            install_models(layout, record, args.models_from)
        install_plugin(layout, record, with_models=not args.no_models)
    finally:
        save_record(layout, record)
    say("done. Restart GIMP; then Select > Person (BodyPix).")
    return check(layout, quiet=True)


# --------------------------------------------------------------------------- uninstall ---
def uninstall(layout: Layout) -> int:
    """Remove the recorded files and folders (folders only when nothing else is left in them)."""
    if not layout.record.is_file():
        say(f"nothing recorded in {layout.record}; nothing removed")
        return 0
    record = load_record(layout)
    removed = 0
    if layout.python.is_file():  # the plug-in's model server runs from this environment
        subprocess.run([str(layout.python), "-m", "bodypix_gimp.worker", "--stop"], capture_output=True)
    venvs = [Path(d) for d in record["dirs"] if Path(d).name == "venv" and (Path(d) / "pyvenv.cfg").is_file()]
    for v in venvs:  # the environment is ours as a whole
        shutil.rmtree(v, ignore_errors=True)
        removed += 1
    for f in record["files"]:
        p = Path(f)
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed += 1
        pyc = p.parent / "__pycache__"
        if pyc.is_dir():
            shutil.rmtree(pyc, ignore_errors=True)
    layout.record.unlink()
    for d in sorted(record["dirs"], key=len, reverse=True):
        p = Path(d)
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    say(
        f"removed {removed} installed items"
        + ("" if not layout.data.exists() else f"; kept {layout.data} (not empty)")
    )
    return 0


# ------------------------------------------------------------------------------ check ---
def check(layout: Layout, quiet: bool = False) -> int:
    """Report each part of the install; exit status 0 only when everything is in place."""
    problems: list[str] = []

    def line(ok: bool, what: str, fix: str = "", warn: bool = False) -> None:
        if not ok and not warn:
            problems.append(what + (f" ({fix})" if fix else ""))
        if not quiet or not ok:
            tag = "ok" if ok else "WARNING" if warn else "MISSING"
            print(f"  [{tag}] {what}" + ("" if ok or not fix else f" -> {fix}"))

    print(f"bodypix-gimp install check (plug-in folder {layout.plugin_dir})")
    main = layout.plugin_dir / f"{paths.PLUGIN_NAME}.py"
    line(main.is_file(), f"plug-in file {main}", "run install.py")
    line(
        main.is_file() and os.access(main, os.X_OK) or layout.platform == "win32",
        "plug-in file is executable",
        f"chmod +x {main}",
    )
    cfg_path = layout.plugin_dir / CONFIG_NAME
    config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    line(bool(config), f"plug-in config {cfg_path}", "run install.py")
    python = Path(config.get("python") or layout.python)
    probe = None
    if python.is_file():
        code = (
            "import json, sys, onnxruntime, numpy, bodypix_gimp as b; from bodypix_gimp.runtime import store as m; "
            "print(json.dumps({'version': b.__version__, 'ort': onnxruntime.__version__, "
            "'models': m.installed_models(sys.argv[1] or None)}))"
        )
        proc = subprocess.run(
            [str(python), "-c", code, config.get("models") or ""], capture_output=True, text=True
        )
        if proc.returncode == 0:
            probe = json.loads(proc.stdout.strip().splitlines()[-1])
    line(
        probe is not None,
        f"Python environment {python}"
        + (f" (bodypix-gimp {probe['version']}, onnxruntime {probe['ort']})" if probe else ""),
        "run install.py",
    )
    if probe:
        bodypix = [k for k, v in probe["models"].items() if v and "stride" in k]
        line(
            bool(bodypix),
            "BodyPix models: " + (", ".join(bodypix) or "none"),
            "run install.py --models-from DIR",
        )
    in_profile = layout.plugin_root in layout.gimp_profiles
    line(
        in_profile,
        "GIMP 3 will find the plug-in folder"
        if in_profile
        else f"{layout.plugin_root} is not the plug-ins folder of an existing GIMP 3 profile",
        "start GIMP 3 once, or add the folder in Preferences > Folders > Plug-ins",
        warn=True,
    )
    if config.get("launcher"):
        print(
            "  [note] Flatpak GIMP: allow starting the worker on the host once with\n"
            f"         flatpak override --user --talk-name=org.freedesktop.Flatpak {paths.FLATPAK_ID}"
        )
    if not quiet:
        print("all good" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin-dir", help="a GIMP plug-ins folder to install into instead of the detected one")
    ap.add_argument(
        "--models-from", metavar="DIR", help="a local folder laid out like shared/models (offline)"
    )
    ap.add_argument(
        "--data-dir", help="where the environment and models go (default: the per-user data folder)"
    )
    ap.add_argument("--no-models", action="store_true", help="skip the models (the plug-in will say so)")
    ap.add_argument("--editable", action="store_true", help="install the project editable (developers)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="report what is installed and whether GIMP finds it"
    )
    mode.add_argument("--uninstall", action="store_true", help="remove everything this installer installed")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout(args)
    try:
        if args.check:
            return check(layout)
        if args.uninstall:
            return uninstall(layout)
        return install(layout, args)
    except InstallError as e:
        print(f"[bodypix-gimp] ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
