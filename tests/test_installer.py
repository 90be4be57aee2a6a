"""installer/: plug-in folder logic for Linux, Flatpak, Windows and macOS, and install/uninstall
of the plug-in and models into throw-away folders (the environment step is in the slow test)."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import platformdirs
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "installer"))
import install  # noqa: E402
import paths  # noqa: E402


def lister(tree: dict[str, list[str]]):
    """A fake os.listdir over a dict of folder -> names (to test other platforms' folders)."""

    def listdir(p: str) -> list[str]:
        if p not in tree:
            raise FileNotFoundError(p)
        return tree[p]

    return listdir


# --------------------------------------------------------------------------- plug-in folders ---
def test_linux_default_profile_when_gimp_never_ran() -> None:
    prof = paths.default_profile("linux", {}, "/home/ann", listdir=lister({}))
    assert prof.plugin_dir == PurePosixPath("/home/ann/.config/GIMP/3.0/plug-ins") and prof.kind == "native"


def test_linux_newest_existing_profile_and_xdg_config_home() -> None:
    tree = {"/xdg/GIMP": ["2.10", "3.0", "3.2", "3.10", "notes"]}
    prof = paths.default_profile("linux", {"XDG_CONFIG_HOME": "/xdg"}, "/home/ann", listdir=lister(tree))
    assert prof.plugin_dir == PurePosixPath("/xdg/GIMP/3.10/plug-ins")  # 3.10 > 3.2 (numeric, not text)


def test_flatpak_profile_found_when_only_flatpak_gimp_ran() -> None:
    tree = {"/home/ann/.var/app/org.gimp.GIMP/config/GIMP": ["3.0"]}
    prof = paths.default_profile("linux", {}, "/home/ann", listdir=lister(tree))
    assert prof.plugin_dir == PurePosixPath("/home/ann/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins")
    assert prof.kind == "flatpak"
    assert paths.worker_launcher(prof.kind) == ["flatpak-spawn", "--host"]
    assert paths.worker_launcher("native") == []


def test_native_profile_preferred_over_flatpak() -> None:
    tree = {"/home/ann/.config/GIMP": ["3.0"], "/home/ann/.var/app/org.gimp.GIMP/config/GIMP": ["3.0"]}
    found = paths.find_profiles("linux", {}, "/home/ann", listdir=lister(tree))
    assert [p.kind for p in found] == ["native", "flatpak"]


def test_gimp3_directory_overrides_everything() -> None:
    prof = paths.default_profile("linux", {"GIMP3_DIRECTORY": "/tmp/prof"}, "/home/ann", listdir=lister({}))
    assert prof.plugin_dir == PurePosixPath("/tmp/prof/plug-ins") and prof.kind == "env"


def test_windows_appdata() -> None:
    env = {"APPDATA": r"C:\Users\Ann\AppData\Roaming", "LOCALAPPDATA": r"C:\Users\Ann\AppData\Local"}
    prof = paths.default_profile("win32", env, r"C:\Users\Ann", listdir=lister({}))
    assert prof.plugin_dir == PureWindowsPath(r"C:\Users\Ann\AppData\Roaming\GIMP\3.0\plug-ins")
    tree = {r"C:\Users\Ann\AppData\Roaming\GIMP": ["3.0", "3.2"]}
    assert paths.default_profile(
        "win32", env, r"C:\Users\Ann", listdir=lister(tree)
    ).plugin_dir == PureWindowsPath(r"C:\Users\Ann\AppData\Roaming\GIMP\3.2\plug-ins")
    assert paths.data_dir("win32", env, r"C:\Users\Ann") == PureWindowsPath(
        r"C:\Users\Ann\AppData\Local\bodypix-gimp"
    )
    assert paths.venv_python(PureWindowsPath(r"C:\v"), "win32") == PureWindowsPath(r"C:\v\Scripts\python.exe")


def test_windows_without_appdata_falls_back_to_home() -> None:
    prof = paths.default_profile("win32", {}, r"C:\Users\Bo", listdir=lister({}))
    assert prof.plugin_dir == PureWindowsPath(r"C:\Users\Bo\AppData\Roaming\GIMP\3.0\plug-ins")


def test_macos_application_support() -> None:
    prof = paths.default_profile("darwin", {}, "/Users/ann", listdir=lister({}))
    assert prof.plugin_dir == PurePosixPath("/Users/ann/Library/Application Support/GIMP/3.0/plug-ins")
    assert paths.venv_python(PurePosixPath("/v"), "darwin") == PurePosixPath("/v/bin/python")


@pytest.mark.parametrize("xdg", [None, "/data/xdg"])
def test_data_dir_is_where_the_core_looks_for_models(monkeypatch, xdg) -> None:
    """The installer (stdlib only) must agree with platformdirs, which the core uses."""
    if xdg:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    else:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    ours = paths.data_dir("linux", dict(os.environ), str(Path.home()))
    assert str(ours) == platformdirs.unix.Unix("bodypix-gimp", appauthor=False).user_data_dir
    from bodypix_gimp.runtime.store import user_models_dir

    assert user_models_dir() == Path(str(ours)) / "models"


def test_macos_data_dir_matches_platformdirs() -> None:
    from platformdirs.macos import MacOS

    mac = MacOS("bodypix-gimp", appauthor=False).user_data_dir
    assert str(paths.data_dir("darwin", {}, str(Path.home()))) == mac


# ------------------------------------------------------------------ install / uninstall ---
def args_for(tmp: Path, **kw) -> argparse.Namespace:
    return install.parse_args(
        ["--plugin-dir", str(tmp / "plug-ins"), "--data-dir", str(tmp / "data")] + kw.get("extra", [])
    )


def fake_env(layout) -> None:
    """Stand-in for the venv step (tested for real in the slow test): this test run's Python."""
    layout.python.parent.mkdir(parents=True)
    layout.python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    layout.python.chmod(0o755)


def test_layout_flatpak_detected_from_plugin_dir(tmp_path: Path) -> None:
    d = tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"
    layout = install.Layout(install.parse_args(["--plugin-dir", str(d)]), platform="linux", env={}, home="/x")
    assert layout.profile_kind == "flatpak" and layout.plugin_dir == d.resolve() / "bodypix"


def test_plugin_and_models_install_then_uninstall_exactly(tmp_path: Path, models_dir: Path) -> None:
    layout = install.Layout(args_for(tmp_path))
    fake_env(layout)
    (tmp_path / "plug-ins" / "other").mkdir(parents=True)
    foreign = tmp_path / "plug-ins" / "other" / "other.py"
    foreign.write_text("# someone else's plug-in\n")
    record = install.load_record(layout)
    install.install_models(layout, record, str(models_dir))
    install.install_plugin(layout, record, with_models=True)
    install.save_record(layout, record)

    main = layout.plugin_dir / "bodypix.py"
    assert os.access(main, os.X_OK)
    assert sorted(p.name for p in layout.plugin_dir.iterdir()) == sorted(
        [p.name for p in (ROOT / "gimp_plugin" / "bodypix").glob("*.py")] + ["bodypix-config.json"]
    )
    config = json.loads((layout.plugin_dir / "bodypix-config.json").read_text())
    assert config["python"] == str(layout.python) and config["models"] == str(layout.models)
    onnx = models_dir / "bodypix" / "onnx" / "bodypix_mobilenet075_quant2_stride16.onnx"
    current = layout.models / "sets" / json.loads((layout.models / "current.json").read_text())["set"]
    copied = current / "bodypix" / "onnx" / onnx.name
    assert copied.read_bytes() == onnx.read_bytes()

    # running again is safe: same files, record still complete
    record = install.load_record(layout)
    install.install_models(layout, record, str(models_dir))
    install.install_plugin(layout, record, with_models=True)
    install.save_record(layout, record)
    saved = json.loads(layout.record.read_text())
    assert saved["files"] == record["files"] and saved["models"] == str(layout.models)
    for path, digest in saved["files"].items():  # each file's checksum as it is on disk
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest

    (layout.data / "user-notes.txt").write_text("mine")  # not installed by us: must survive
    assert install.uninstall(layout) == 0
    assert not layout.plugin_dir.exists() and not layout.models.exists()
    assert foreign.is_file() and (layout.data / "user-notes.txt").is_file()
    assert layout.python.is_file()  # the stand-in environment was not made by the installer
    assert (tmp_path / "plug-ins").is_dir()  # it held someone else's plug-in


def test_models_from_a_folder_without_bodypix_is_refused(tmp_path: Path) -> None:
    layout = install.Layout(args_for(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(install.InstallError, match="no BodyPix models in"):
        install.install_models(layout, install.load_record(layout), str(tmp_path / "empty"))


def test_check_reports_missing_install(tmp_path: Path, capsys) -> None:
    layout = install.Layout(args_for(tmp_path))
    assert install.check(layout) == 1
    out = capsys.readouterr().out
    assert "[MISSING] plug-in file" in out and "[MISSING] Python environment" in out


@pytest.mark.slow
def test_full_install_check_uninstall_on_this_python(tmp_path: Path, models_dir: Path) -> None:
    """The one command, for real: venv + pip + models + plug-in, --check, again, --uninstall."""
    cmd = [sys.executable, str(ROOT / "installer" / "install.py"), "--plugin-dir", str(tmp_path / "p"),
           "--data-dir", str(tmp_path / "d")]  # fmt: skip
    graphs = tmp_path / "cache" / "graphs"  # the user's cache folder for derived graphs
    env = {k: v for k, v in os.environ.items() if k != "BODYPIX_MODELS"} | {"BODYPIX_GRAPH_CACHE": str(graphs)}
    for _ in range(2):  # the second run must succeed on top of the first
        r = subprocess.run(cmd + ["--models-from", str(models_dir)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    assert len(list(graphs.glob("rvm-alpha-*.onnx"))) == 1  # RVM's alpha graph, made once with the models
    (graphs / "notes.txt").write_text("not ours")
    r = subprocess.run(cmd + ["--check"], capture_output=True, text=True, env=env)
    assert "[ok] BodyPix models: " in r.stdout and "[ok] Python environment" in r.stdout, r.stdout
    r = subprocess.run(cmd + ["--uninstall"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and not (tmp_path / "d").exists() and not (tmp_path / "p" / "bodypix").exists()
    assert [p.name for p in graphs.iterdir()] == ["notes.txt"]  # the derived graph went, nothing else


# ------------------------------------------------- never touch what the installer did not make ---
def cli(tmp: Path, *extra: str) -> list[str]:
    return ["--plugin-dir", str(tmp / "plug-ins"), "--data-dir", str(tmp / "data"), *extra]


def test_existing_venv_is_refused_and_survives_a_forced_install(tmp_path: Path, capsys) -> None:
    """A venv/ the user made in --data-dir: refused in one line; with --force used but never removed."""
    venv = tmp_path / "data" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "my-notes.txt").write_text("mine")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert install.main(cli(tmp_path, "--no-models")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(venv) in err and "--force" in err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before  # nothing written

    # --force: the installer uses it (here pip is missing in it, a real failure) and records it as not ours
    assert install.main(cli(tmp_path, "--no-models", "--force")) == 1
    assert "pip install failed" in capsys.readouterr().err
    assert json.loads((tmp_path / "data" / "install-record.json").read_text())["venv"] is None
    assert install.main(cli(tmp_path, "--uninstall")) == 0
    assert (venv / "pyvenv.cfg").is_file() and (venv / "my-notes.txt").read_text() == "mine"


def test_another_bodypix_plugin_is_refused_then_forced_over(tmp_path: Path, capsys) -> None:
    theirs = tmp_path / "plug-ins" / "bodypix" / "bodypix.py"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("# another plug-in that happens to be called bodypix\n")
    assert install.main(cli(tmp_path, "--no-models")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{theirs} was not installed by bodypix-gimp" in err and "--force" in err
    assert theirs.read_text().startswith("# another plug-in") and not (tmp_path / "data").exists()
    # the preflight check on its own: the same verdict, and --force lets it through
    layout = install.Layout(args_for(tmp_path))
    with pytest.raises(install.InstallError, match="was not installed by bodypix-gimp"):
        install.preflight(layout, install.new_record(), force=False)
    install.preflight(layout, install.new_record(), force=True)


def test_uninstall_keeps_a_file_changed_since_install(tmp_path: Path, capsys) -> None:
    layout = install.Layout(args_for(tmp_path))
    record = install.new_record()
    install.install_plugin(layout, record, with_models=False)
    install.save_record(layout, record)
    pixels = layout.plugin_dir / "pixels.py"
    pixels.write_text(pixels.read_text() + "# my local fix\n")
    # a re-install does not overwrite the user's change either
    with pytest.raises(install.InstallError, match="pixels.py was changed since bodypix-gimp installed it"):
        install.preflight(layout, install.load_record(layout), force=False)
    assert install.uninstall(layout) == 0
    out = capsys.readouterr().out
    assert f"kept {pixels} (changed since it was installed)" in out
    assert pixels.read_text().endswith("# my local fix\n")
    assert sorted(p.name for p in layout.plugin_dir.iterdir()) == ["pixels.py"]
    assert not layout.record.exists()


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"files": 5}', '{"files": {"/x": 1}}', "\udcff"])
def test_damaged_record_is_one_line_and_nothing_is_removed(tmp_path: Path, capsys, damage: str) -> None:
    layout = install.Layout(args_for(tmp_path))
    record = install.new_record()
    install.install_plugin(layout, record, with_models=False)
    install.save_record(layout, record)
    layout.record.write_bytes(damage.encode("utf-8", "surrogateescape"))
    assert install.main(cli(tmp_path, "--uninstall")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "install record" in err and "damaged" in err, err
    assert (layout.plugin_dir / "bodypix.py").is_file() and layout.record.is_file()
    assert install.main(cli(tmp_path, "--check")) == 1
    out = capsys.readouterr().out
    assert "[DAMAGED] the install record" in out and "Traceback" not in out


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"python": 3}', '{"python": "/p", "models": []}'])
def test_check_on_a_damaged_config_is_one_line(tmp_path: Path, capsys, damage: str) -> None:
    layout = install.Layout(args_for(tmp_path))
    record = install.new_record()
    install.install_plugin(layout, record, with_models=False)
    (layout.plugin_dir / "bodypix-config.json").write_text(damage)
    assert install.main(cli(tmp_path, "--check")) == 1
    captured = capsys.readouterr()
    damaged = [x for x in captured.out.splitlines() if "[DAMAGED]" in x]
    assert len(damaged) == 1 and "bodypix-config.json is damaged" in damaged[0], captured.out
    assert "Traceback" not in captured.out + captured.err


def test_full_disk_while_writing_the_config_keeps_the_old_one(tmp_path: Path, monkeypatch) -> None:
    """Fault injection: the disk fills while the new config is flushed; the old config stays whole."""
    layout = install.Layout(args_for(tmp_path))
    record = install.new_record()
    install.install_plugin(layout, record, with_models=False)
    cfg = layout.plugin_dir / "bodypix-config.json"
    before = cfg.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(install.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        install.install_plugin(layout, record, with_models=True)
    assert cfg.read_bytes() == before and json.loads(before)["models"] is None
    assert not [p.name for p in layout.plugin_dir.iterdir() if p.name.endswith(".tmp")]


def test_read_only_data_folder_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Fault injection: creating the data folder fails with EROFS; one line, no traceback."""
    real = Path.mkdir

    def read_only(self: Path, *a, **kw) -> None:
        if self.is_relative_to(tmp_path / "data"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert install.main(cli(tmp_path, "--no-models")) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"[bodypix-gimp] ERROR: Read-only file system ({tmp_path / 'data'})"


def test_record_of_the_first_installer_is_still_read(tmp_path: Path) -> None:
    """Records written before checksums (plain lists): their files count as ours, as that record said."""
    layout = install.Layout(args_for(tmp_path))
    record = install.new_record()
    install.install_plugin(layout, record, with_models=False)
    v1 = {"files": sorted(record["files"]), "dirs": record["dirs"], "plugin_dir": str(layout.plugin_dir)}
    layout.data.mkdir(parents=True)
    layout.record.write_text(json.dumps(v1))
    loaded = install.load_record(layout)
    assert loaded["files"] == dict.fromkeys(v1["files"]) and loaded["venv"] is None
    install.preflight(layout, loaded, force=False)  # a re-install may overwrite them
    assert install.uninstall(layout) == 0
    assert not layout.plugin_dir.exists() and not layout.record.exists()
