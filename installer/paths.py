"""Where GIMP 3 looks for user plug-ins, and where bodypix-gimp keeps its environment and models.

Pure functions of (platform, environment, home) so every platform's answer is unit-tested
on any machine.  Standard library only: this runs before the environment with
platformdirs exists.  ``data_dir`` reproduces ``platformdirs.user_data_dir("bodypix-gimp",
appauthor=False)`` (checked against platformdirs in the tests), because the core looks
for installed models exactly there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

APP = "bodypix-gimp"
PLUGIN_NAME = "bodypix"  # GIMP runs plug-ins/<name>/<name>.py
FLATPAK_ID = "org.gimp.GIMP"


@dataclass(frozen=True)
class Profile:
    """One GIMP 3 user profile: its folder and how GIMP was installed (native or flatpak)."""

    folder: PurePath
    kind: str  # "native" | "flatpak" | "env"

    @property
    def plugin_dir(self) -> PurePath:
        return self.folder / "plug-ins"


def _pure(platform: str) -> type[PurePath]:
    return PureWindowsPath if platform == "win32" else PurePosixPath


def config_roots(platform: str, env: dict[str, str], home: str) -> list[tuple[PurePath, str]]:
    """Folders that hold ``GIMP/3.x`` profiles, most likely first, with their install kind.

    Linux: $XDG_CONFIG_HOME (default ~/.config) and Flatpak's ~/.var/app/org.gimp.GIMP/config;
    Windows: %APPDATA%; macOS: ~/Library/Application Support (GIMP's gimp_env_init rules).
    """
    P = _pure(platform)
    if platform == "win32":
        appdata = env.get("APPDATA") or str(P(home) / "AppData" / "Roaming")
        return [(P(appdata) / "GIMP", "native")]
    if platform == "darwin":
        return [(P(home) / "Library" / "Application Support" / "GIMP", "native")]
    xdg = env.get("XDG_CONFIG_HOME") or str(P(home) / ".config")
    return [
        (P(xdg) / "GIMP", "native"),
        (P(home) / ".var" / "app" / FLATPAK_ID / "config" / "GIMP", "flatpak"),
    ]


def _version_key(name: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"3\.(\d+)", name)
    return (3, int(m.group(1))) if m else None


def find_profiles(platform: str, env: dict[str, str], home: str, listdir=os.listdir) -> list[Profile]:
    """Existing GIMP 3.x profiles, newest version first within each root.

    ``$GIMP3_DIRECTORY`` (GIMP's own override of the profile folder) wins when set.
    """
    if env.get("GIMP3_DIRECTORY"):
        return [Profile(_pure(platform)(env["GIMP3_DIRECTORY"]), "env")]
    found: list[Profile] = []
    for root, kind in config_roots(platform, env, home):
        try:
            names = listdir(str(root))
        except OSError:
            continue
        versions = sorted((k, n) for n in names if (k := _version_key(n)))
        found += [Profile(root / n, kind) for _, n in reversed(versions)]
    return found


def default_profile(platform: str, env: dict[str, str], home: str, listdir=os.listdir) -> Profile:
    """The profile to install into: the newest existing one, else a native 3.0 profile.

    GIMP creates ``plug-ins`` in a new profile on first start, and reads a plug-in folder
    created before that, so installing before GIMP's first start works.
    """
    found = find_profiles(platform, env, home, listdir)
    if found:
        return found[0]
    root, kind = config_roots(platform, env, home)[0]
    return Profile(root / "3.0", kind)


def data_dir(platform: str, env: dict[str, str], home: str) -> PurePath:
    """Per-user data folder (= platformdirs.user_data_dir(APP, appauthor=False))."""
    P = _pure(platform)
    if platform == "win32":
        local = env.get("LOCALAPPDATA") or str(P(home) / "AppData" / "Local")
        return P(local) / APP
    if platform == "darwin":
        return P(home) / "Library" / "Application Support" / APP
    xdg = env.get("XDG_DATA_HOME", "").strip() or str(P(home) / ".local" / "share")
    return P(xdg) / APP


def venv_python(venv: PurePath, platform: str) -> PurePath:
    """The interpreter inside a venv (Scripts\\python.exe on Windows)."""
    if platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def worker_launcher(profile_kind: str) -> list[str]:
    """Command prefix that runs the worker outside GIMP's sandbox.

    Flatpak GIMP cannot execute the host's Python inside its sandbox (the venv points at
    the host's /usr/bin/python3, which the runtime does not have), so the worker is
    started on the host with ``flatpak-spawn --host``; the user must grant GIMP
    ``--talk-name=org.freedesktop.Flatpak`` once (``--check`` says so).
    """
    return ["flatpak-spawn", "--host"] if profile_kind == "flatpak" else []


def as_path(p: PurePath) -> Path:
    return Path(str(p))
