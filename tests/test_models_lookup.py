"""Where the models are looked up (README "Models"): --models, then $BODYPIX_MODELS, then the
per-user data folder the installer fills; and what runs with only some models installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp import ModelNotFoundError, RuntimeOptions, Settings, segment
from conftest import SAMPLE
from PIL import Image


def linked_models(dest: Path, models_dir: Path, names: tuple[str, ...]) -> Path:
    """A models folder holding only ``names`` (links to the real files' folders)."""
    dest.mkdir(parents=True)
    for name in names:
        (dest / name).symlink_to(models_dir / name)
    return dest


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bodypix_gimp.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user without $BODYPIX_MODELS whose data folder is ``home``/data."""
    env = {k: v for k, v in os.environ.items() if k != "BODYPIX_MODELS"}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"))
    return env


def test_per_user_data_folder_is_the_last_step(tmp_path, models_dir) -> None:  # noqa: ANN001
    # platformdirs' per-user data folder on Linux: $XDG_DATA_HOME/bodypix-gimp/models
    user_models = tmp_path / "data" / "bodypix-gimp" / "models"
    env = user_env(tmp_path)
    empty = run_cli(env, "segment", str(SAMPLE), "--out", str(tmp_path / "o0"), "--no-refine", "--no-fingers")
    assert empty.returncode == 2 and "Traceback" not in empty.stderr
    assert f"No models installed (looked in {user_models})" in empty.stderr
    linked_models(user_models, models_dir, ("bodypix",))
    found = run_cli(env, "segment", str(SAMPLE), "--out", str(tmp_path / "o1"), "--no-refine", "--no-fingers", "-q")
    assert found.returncode == 0, found.stderr
    mask = np.asarray(Image.open(tmp_path / "o1" / "astronaut.person.png"))
    assert (mask == 255).sum() > 0.2 * mask.size
    # $BODYPIX_MODELS comes first: a wrong one is an error, not a fall-through to the user folder
    wrong = run_cli({**env, "BODYPIX_MODELS": str(tmp_path / "nowhere")}, "segment", str(SAMPLE),
                    "--out", str(tmp_path / "o2"), "--no-refine", "--no-fingers")
    assert wrong.returncode == 2 and "does not exist" in wrong.stderr and str(tmp_path / "nowhere") in wrong.stderr
    # --models comes before both
    explicit = run_cli({**env, "BODYPIX_MODELS": str(tmp_path / "nowhere")}, "segment", str(SAMPLE),
                       "--out", str(tmp_path / "o3"), "--no-refine", "--no-fingers", "-q", "--models", str(models_dir))
    assert explicit.returncode == 0, explicit.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o3" / "astronaut.person.png")), mask)


def test_selfie_guided_runs_without_rvm(tmp_path, models_dir, astronaut) -> None:  # noqa: ANN001
    """README licence section: `--refine selfie-guided` needs no GPL model (RVM absent here)."""
    folder = linked_models(tmp_path / "models", models_dir, ("bodypix", "selfie_segmentation"))
    assert not (folder / "rvm").exists()
    runtime = RuntimeOptions(models=str(folder))
    res = segment(astronaut, Settings(refine="selfie-guided"), runtime)
    raw = segment(astronaut, Settings(), runtime)
    assert res.found_person and "refine" in res.timings
    assert np.count_nonzero((res.person_mask >= 128) != (raw.person_mask >= 128)) > 100  # it refined
    with pytest.raises(ModelNotFoundError, match="rvm"):
        segment(astronaut, Settings(refine="rvm"), runtime)
