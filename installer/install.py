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
A record of every file (with its sha256) and folder made goes to ``<data>/install-record.json``;
``--uninstall`` removes exactly those, and of the files only the ones still as written (a file
changed since is kept and named).  The installer never writes into what it did not make: an
existing ``venv/`` in the data folder or plug-in files of another ``bodypix`` plug-in stop it
with a one-line message unless ``--force`` is given (a forced foreign environment is used but
never removed).  The config and the plug-in files are written atomically (a temporary file in
the same folder, then ``os.replace``), so an interrupted install never leaves half a file.

Standard library only: this runs with whatever Python the user has.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paths  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SRC = ROOT / "gimp_plugin" / paths.PLUGIN_NAME
CONFIG_NAME = "bodypix-config.json"
RECORD_NAME = "install-record.json"
RECORD_VERSION = 2
MIN_PYTHON = (3, 10)
# What bodypix_gimp's model setup writes into a models folder (see its setup package):
# checksums.json (relative path -> sha256) beside the files, in the folder itself (older
# installs) or in each versioned set below sets/, and the pointer to the active set.
MODEL_CHECKSUMS = "checksums.json"
MODEL_SETS = "sets"
MODEL_POINTER = "current.json"


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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> str:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (GIMP loading the plug-in) sees the old file or the new one, never a part; on a
    full disk the old file stays as it was and the temporary file is removed.  Returns the sha256.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, mode & ~umask)  # mkstemp made it 0600; honour the umask like cp would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


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


# ----------------------------------------------------------------------------- record ---
def new_record() -> dict:
    """What this installer made: files (path -> sha256 as written), folders, the environment, models."""
    return {"version": RECORD_VERSION, "files": {}, "dirs": [], "venv": None, "models": None}


def load_record(layout: Layout) -> dict:
    """The record of an earlier install (an empty one when there is none).

    A record that is not readable JSON of the expected shape is an :class:`InstallError`
    (one line): without it nobody can tell what is ours, so nothing may be touched.
    A record of the first installer (lists without checksums) is read with ``None``
    checksums: its files count as ours, as that installer's record said.
    """
    if not layout.record.exists():
        return new_record()
    try:
        data = json.loads(layout.record.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = new_record()
        files, dirs = data.get("files", {}), data.get("dirs", [])
        if isinstance(files, list):  # version 1: paths only; its venv was listed among the dirs
            files = dict.fromkeys(files)
            record["venv"] = next((d for d in dirs if isinstance(d, str) and Path(d).name == "venv"), None)
        else:
            record["venv"] = data.get("venv")
            record["models"] = data.get("models")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in files.items()
        ):
            raise ValueError("'files' is not a table of paths and checksums")
        if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
            raise ValueError("'dirs' is not a list of paths")
        if not all(v is None or isinstance(v, str) for v in (record["venv"], record["models"])):
            raise ValueError("'venv' or 'models' is not a path")
        record["files"], record["dirs"] = files, dirs
        if isinstance(data.get("plugin_dir"), str):
            record["plugin_dir"] = data["plugin_dir"]
        return record
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InstallError(
            f"the install record {layout.record} is damaged ({e}); nothing was changed. "
            "Remove what you want gone by hand, or delete the record and install again with --force"
        ) from None


def save_record(layout: Layout, record: dict) -> None:
    record["dirs"] = sorted(set(record["dirs"]))
    record["files"] = dict(sorted(record["files"].items()))
    layout.data.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.record, (json.dumps(record, indent=1) + "\n").encode())


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


def ours_unchanged(path: Path, record: dict) -> bool:
    """``path`` was written by this installer and is still exactly as written."""
    if str(path) not in record["files"]:
        return False
    expected = record["files"][str(path)]
    return expected is None or (path.is_file() and sha256_of(path) == expected)


def foreign_files(folder: Path, record: dict) -> list[Path]:
    """Files in ``folder`` this installer did not write, or that changed since (``__pycache__`` aside)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*")
        if "__pycache__" not in p.relative_to(folder).parts and not p.is_dir() and not ours_unchanged(p, record)
    )  # fmt: skip


def preflight(layout: Layout, record: dict, force: bool) -> None:
    """Refuse, before anything is written, to take over what another program or the user made."""
    if layout.venv.exists() and record["venv"] != str(layout.venv) and not force:
        raise InstallError(
            f"{layout.venv} exists and was not made by this installer; move it away, choose another "
            "--data-dir, or pass --force to install into it (it is then never removed)"
        )
    foreign = foreign_files(layout.plugin_dir, record)
    if foreign and not force:
        what = "was changed since bodypix-gimp installed it" if str(foreign[0]) in record["files"] else (
            "was not installed by bodypix-gimp (another plug-in named bodypix?)"
        )
        more = f" (and {len(foreign) - 1} more file(s) there)" if len(foreign) > 1 else ""
        raise InstallError(
            f"{foreign[0]} {what}{more}; move it away or pass --force to overwrite it"
        )


# ---------------------------------------------------------------------------- steps ---
def install_env(layout: Layout, record: dict, editable: bool = False) -> None:
    """Venv with the project (and so onnxruntime, numpy, pillow, opencv) installed."""
    if sys.version_info < MIN_PYTHON:
        raise InstallError(
            f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed, this is {sys.version.split()[0]}"
        )
    makedirs(layout.data, record)
    if not layout.venv.exists():
        say(f"creating the Python environment in {layout.venv}")
        record["venv"] = str(layout.venv)  # before creating it: a half-made one is ours too
        run([sys.executable, "-m", "venv", str(layout.venv)], "python -m venv")
    elif record["venv"] == str(layout.venv) and not layout.python.is_file():
        say(f"re-creating the damaged Python environment in {layout.venv}")
        run([sys.executable, "-m", "venv", "--clear", str(layout.venv)], "python -m venv")
    elif record["venv"] != str(layout.venv):
        say(f"--force: installing into the existing environment {layout.venv} (uninstall will leave it)")
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
print("RESULT " + json.dumps({"installed": res.installed, "notes": res.notes}))
"""


def install_models(layout: Layout, record: dict, models_from: str | None) -> None:
    """Models into the per-user folder with the core's ``bodypix_gimp.setup.install.install``.

    From ``--models-from`` (copied, checksums verified) or, without it, downloaded from the
    official locations and converted to ONNX.  It is all-or-nothing, so a failure leaves
    the folder as it was.  The models folder keeps its own record of what it holds
    (``checksums.json``); the install record names the folder, and uninstall removes the
    files listed there that still match.
    """
    if models_from and not (Path(models_from).expanduser() / "bodypix").is_dir():
        raise InstallError(f"no BodyPix models in {models_from}/bodypix; is it laid out like shared/models?")
    makedirs(layout.models, record)
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
    record["models"] = str(layout.models)
    for note in result[0]["notes"]:
        say("  note: " + note)
    say(f"{len(result[0]['installed'])} model files in {layout.models}")


def install_plugin(layout: Layout, record: dict, with_models: bool) -> None:
    """plug-ins/bodypix/: the plug-in files, bodypix.py executable, and the config it reads."""
    makedirs(layout.plugin_dir, record)
    record["plugin_dir"] = str(layout.plugin_dir)
    main = f"{paths.PLUGIN_NAME}.py"
    for f in sorted(PLUGIN_SRC.glob("*.py")):
        dst = layout.plugin_dir / f.name
        mode = 0o755 if f.name == main else 0o644
        record["files"][str(dst)] = write_atomic(dst, f.read_bytes(), mode)
    config = {
        "python": str(layout.python),
        "models": str(layout.models) if with_models else None,
        "launcher": paths.worker_launcher(layout.profile_kind),
        "source": str(ROOT),
    }
    cfg = layout.plugin_dir / CONFIG_NAME
    record["files"][str(cfg)] = write_atomic(cfg, json.dumps(config, indent=1).encode())
    say(f"plug-in installed in {layout.plugin_dir}")


def install(layout: Layout, args: argparse.Namespace) -> int:
    record = load_record(layout)
    preflight(layout, record, force=args.force)
    try:
        install_env(layout, record, editable=args.editable)
        if not args.no_models:
            install_models(layout, record, args.models_from)
        install_plugin(layout, record, with_models=not args.no_models)
    finally:
        if layout.data.is_dir():
            save_record(layout, record)
    say("done. Restart GIMP; then Select > Person (BodyPix).")
    return check(layout, quiet=True)


# --------------------------------------------------------------------------- uninstall ---
def _inside(folder: Path, rel: str) -> Path | None:
    """``folder/rel`` when ``rel`` is a relative path that stays inside ``folder``."""
    p = Path(rel)
    if p.is_absolute() or p.drive or ".." in p.parts or not rel:
        return None
    return folder / p


def uninstall_models(models: Path, kept: list[str]) -> tuple[int, set[Path]]:
    """Remove the model files the models folder's own records list, where they still match.

    Returns how many were removed and the folders they were in (removed later when empty).
    """
    removed, folders = 0, set()
    records = [models / MODEL_CHECKSUMS]
    sets = models / MODEL_SETS
    if sets.is_dir():
        records += sorted(d / MODEL_CHECKSUMS for d in sets.iterdir() if d.is_dir() and not d.is_symlink())
    for rec in records:
        if not rec.is_file():
            continue
        try:
            listed = json.loads(rec.read_text(encoding="utf-8"))
            if not isinstance(listed, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as e:
            kept.append(f"{rec.parent} (its {MODEL_CHECKSUMS} is damaged: {e})")
            continue
        for rel, digest in listed.items():
            p = _inside(rec.parent, rel) if isinstance(rel, str) else None
            if p is None or not p.is_file() or p.is_symlink():
                continue
            if sha256_of(p) != digest:
                kept.append(f"{p} (changed since it was installed)")
                continue
            p.unlink()
            removed += 1
            folders.update(q for q in p.parents if q != models and models in q.parents)
        rec.unlink()
        if rec.parent != models:
            folders.add(rec.parent)
    pointer = models / MODEL_POINTER
    if pointer.is_file():
        pointer.unlink()
    if sets.is_dir():
        folders.add(sets)
    return removed, folders


def uninstall(layout: Layout) -> int:
    """Remove what the record lists, files only where unchanged (folders only when left empty)."""
    if not layout.record.is_file():
        say(f"nothing recorded in {layout.record}; nothing removed")
        return 0
    record = load_record(layout)
    removed, kept = 0, []
    venv = Path(record["venv"]) if record["venv"] else None
    python = paths.as_path(paths.venv_python(venv, layout.platform)) if venv else None
    if python is not None and python.is_file():  # the plug-in's model server runs from this environment
        subprocess.run([str(python), "-m", "bodypix_gimp.worker", "--stop"], capture_output=True)
        # the RVM alpha graphs the models' setup derived in the user's cache folder (runtime/rvm_graph.py)
        gone = subprocess.run([str(python), "-m", "bodypix_gimp.runtime.rvm_graph", "--remove"],
                              capture_output=True, text=True)
        if gone.returncode != 0:
            kept.append(f"the cached RVM alpha graphs ({(gone.stderr.strip().splitlines() or ['?'])[-1]})")
    folders: set[Path] = set()
    for f in record["files"]:
        p = Path(f)
        if not p.is_file():
            continue
        if not ours_unchanged(p, record):
            kept.append(f"{p} (changed since it was installed)")
            continue
        p.unlink()
        removed += 1
        folders.add(p.parent)
    for folder in folders:  # Python's byte-code of our plug-in files, written when GIMP ran them
        pyc = folder / "__pycache__"
        if folder == Path(record.get("plugin_dir", "")) and pyc.is_dir() and not pyc.is_symlink():
            shutil.rmtree(pyc, ignore_errors=True)
    if record["models"] and Path(record["models"]).is_dir():
        n, model_folders = uninstall_models(Path(record["models"]), kept)
        removed += n
        folders |= model_folders
    if venv is not None and (venv / "pyvenv.cfg").is_file() and not venv.is_symlink():
        shutil.rmtree(venv, ignore_errors=True)  # the environment is ours as a whole
        removed += 1
    layout.record.unlink()
    for d in sorted(folders | {Path(d) for d in record["dirs"]}, key=lambda p: len(p.parts), reverse=True):
        try:
            if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
        except OSError:
            pass
    say(
        f"removed {removed} installed items"
        + ("" if not layout.data.exists() else f"; kept {layout.data} (not empty)")
    )
    for k in kept:
        say(f"  kept {k}")
    return 0


# ------------------------------------------------------------------------------ check ---
def read_config(path: Path) -> tuple[dict, str]:
    """The plug-in's config and "" when it is fine, else ({}, a one-line reason)."""
    if not path.is_file():
        return {}, ""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {}, f"unreadable ({e})"
    if not isinstance(config, dict) or not isinstance(config.get("python"), str):
        return {}, "not a bodypix-gimp config (no 'python' path)"
    if not isinstance(config.get("models"), (str, type(None))) or not isinstance(config.get("launcher", []), list):
        return {}, "'models' or 'launcher' has the wrong type"
    return config, ""


def check(layout: Layout, quiet: bool = False) -> int:
    """Report each part of the install; exit status 0 only when everything is in place."""
    problems: list[str] = []

    def line(ok: bool, what: str, fix: str = "", warn: bool = False, bad: str = "MISSING") -> None:
        if not ok and not warn:
            problems.append(what + (f" ({fix})" if fix else ""))
        if not quiet or not ok:
            tag = "ok" if ok else "WARNING" if warn else bad
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
    config, damaged = read_config(cfg_path)
    line(
        bool(config),
        f"plug-in config {cfg_path}" + (f" is damaged: {damaged}" if damaged else ""),
        "run install.py" + (" --force" if damaged else ""),
        bad="DAMAGED" if damaged else "MISSING",
    )
    try:
        load_record(layout)
    except InstallError as e:
        line(False, str(e), bad="DAMAGED")
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
            try:
                probe = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                probe = None
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
    ap.add_argument(
        "--force",
        action="store_true",
        help="install into an existing venv/ or over plug-in files this installer did not write",
    )
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
    except OSError as e:  # a read-only or full disk, a permission: one line, not a traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"[bodypix-gimp] ERROR: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
