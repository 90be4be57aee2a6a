"""A rerunnable mutation check: plant one-line bugs in a scratch copy, run the tests that should catch them.

Each mutant is one exact string replacement in one core module.  The module is found by
its text, not by its path (files move; the replaced text must occur exactly once in
``core/bodypix_gimp``), so a mutant whose text no longer exists is reported as *stale*
instead of silently passing.  Every mutant runs in its own scratch copy of the tree
(``git ls-files`` plus untracked, not ignored files) under /tmp: the working tree is never
touched.  The scratch copy's ``core`` comes first on PYTHONPATH, so test subprocesses
(``python -m bodypix_gimp.cli``, the worker) import the mutant too.

A mutant is *killed* when its targeted tests fail (or exceed the timeout), *survived* when
they pass.  Before the mutants, the same test selections run once on the unmutated copy:
a selection that fails there would kill everything and is reported as an error.

    .venv/bin/python tools/mutation.py                       # all mutants, report in reports/
    .venv/bin/python tools/mutation.py --only save-png-binarised,16bit-scale
    .venv/bin/python tools/mutation.py --tree 824fd45         # the tests of an older commit ("before")
    .venv/bin/python tools/mutation.py --list

Needs BODYPIX_MODELS (the real models) like the test suite.  docs/testing.md has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    what: str  # the bug in words
    old: str  # exact text, unique in core/bodypix_gimp
    new: str
    tests: tuple[str, ...]  # pytest node ids / files that should kill it
    k: str = ""  # optional pytest -k expression
    extra: tuple[str, ...] = field(default_factory=tuple)  # extra pytest args (e.g. -m slow)


# Targeted tests: files (or node ids) relative to the repository root.
CLI_FILES = "tests/test_cli_files.py"
MUTANTS: tuple[Mutant, ...] = (
    # --- writing files (batch outputs behind `bodypix-gimp segment`, imageio)
    Mutant("png-binarised", "the CLI's PNG encoder binarises every mask (parts.png all 0, soft alpha lost)",
           'ok, buf = cv2.imencode(".png", np.ascontiguousarray(array),',
           'ok, buf = cv2.imencode(".png", np.where(array >= 128, np.uint8(255), np.uint8(0)),',
           (CLI_FILES, "tests/test_cli.py")),
    Mutant("save-png-binarised", "save_png (evaluation overlays) binarises single-channel arrays",
           'atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))',
           'atomic_write(path, lambda tmp: Image.fromarray(np.where(array >= 128, np.uint8(255), np.uint8(0)) '
           'if array.ndim == 2 else array).save(tmp, format="PNG"))',
           (CLI_FILES,)),
    Mutant("atomic-write-leaves-temp", "a failed save_png leaves its temp file behind",
           "        os.replace(tmp, path)\n    except BaseException:\n        Path(tmp).unlink(missing_ok=True)",
           "        os.replace(tmp, path)\n    except BaseException:\n        pass",
           (CLI_FILES,)),
    Mutant("batch-commit-leaves-temps", "a failed or stopped batch write leaves its temporaries behind",
           "        for tmp, _ in temps:\n            tmp.unlink(missing_ok=True)",
           "        for tmp, _ in temps:\n            pass",
           ("tests/test_batch.py",)),
    Mutant("overwrite-guard-removed", "the guard that stops an output from overwriting an input is gone",
           "if path.resolve() in resolved_inputs:", "if False:",
           (CLI_FILES, "tests/test_cli.py")),
    Mutant("force-guard-removed", "existing outputs are overwritten without --force",
           "if not force and not skip_existing:", "if False:",
           ("tests/test_cli.py",)),
    Mutant("cli-soft-ignored", "--soft is ignored by the CLI",
           'changes["soft_edges"] = True', 'changes["soft_edges"] = False',
           (CLI_FILES,)),
    Mutant("cli-part-mask-wrong-id", "--part-masks writes the next part's mask under each name",
           'encode_png(result.part_mask(s["id"]))', 'encode_png(result.part_mask(s["id"] + 1))',
           (CLI_FILES, "tests/test_cli.py")),
    Mutant("cli-persons-whole-mask", "--persons writes the whole person mask for every person",
           "encode_png(person.mask)", "encode_png(result.person_mask)",
           (CLI_FILES, "tests/test_instances.py")),
    # --- decoding inputs (imageio)
    Mutant("16bit-scale", "16-bit PNG input divided by 255 instead of 65535 (white photo, nobody found)",
           'hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0', "hi = 255.0",
           (CLI_FILES, "tests/test_cli.py")),
    Mutant("16bit-array-low-byte", "uint16 arrays keep their low byte instead of the high one",
           "a = (a >> 8).astype(np.uint8)", "a = a.astype(np.uint8)",
           ("tests/test_pipeline.py::test_rgba_grey_and_16bit_inputs_match_rgb", CLI_FILES)),
    Mutant("input-bgr", "load_image hands the pipeline BGR instead of RGB",
           "return np.ascontiguousarray(a[..., :3])", "return np.ascontiguousarray(a[..., 2::-1])",
           (CLI_FILES,)),
    Mutant("exif-ignored", "EXIF orientation ignored",
           "im = ImageOps.exif_transpose(im)\n", "im = im\n",
           (CLI_FILES, "tests/test_cli.py")),
    Mutant("palette-as-grey", "palette images decoded as greyscale",
           'im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB")',
           'im = im.convert("RGBA" if "A" in im.mode else "RGB").convert("L").convert("RGB")',
           (CLI_FILES,)),
    # --- validating settings
    Mutant("threshold-range", "segmentation threshold above 1 accepted",
           "if not 0.0 <= s.segmentation_threshold <= 1.0:", "if not 0.0 <= s.segmentation_threshold <= 2.0:",
           ("tests/test_settings.py", "tests/test_cli.py")),
    Mutant("max-input-pixels-unchecked", "a max_input_pixels below 10000 accepted",
           "if s.max_input_pixels < 10_000:", "if s.max_input_pixels < 0:",
           ("tests/test_settings.py",)),
    Mutant("min-pose-score-unchecked", "min_pose_score outside 0..1 accepted",
           "if s.min_pose_score is not None and not 0.0 <= s.min_pose_score <= 1.0:",
           "if False:",
           ("tests/test_settings.py",)),
    Mutant("threshold-knob-ignored", "the segmentation threshold knob is ignored",
           "mask = (prob > settings.segmentation_threshold).view(np.uint8)",
           "mask = (prob > 0.5).view(np.uint8)",
           (CLI_FILES, "tests/test_pipeline.py")),
    # --- models lookup
    Mutant("user-models-dir-skipped", "the per-user models folder is never looked at",
           "    path = user_models_dir()\n    if not path.is_dir():",
           "    path = user_models_dir()\n    if True:",
           ("tests/test_models_lookup.py",)),
    # --- refining edges
    Mutant("edge-band-bgr", "the full-resolution edge band reads the photo's colours as BGR",
           "colours = cv2.LUT(rgb[y0:y1, x0:x1], to_unit)",
           "colours = cv2.LUT(np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1]), to_unit)",
           ("tests/test_p3m_2mp.py",)),
    Mutant("edge-band-dropped", "no full-resolution edge band above 1 MP (nearest-neighbour upsampling only)",
           "list(pool.map(tile_row, range(0, H, tile)))", "list(pool.map(tile_row, range(0, 0, tile)))",
           ("tests/test_p3m_2mp.py",)),
    Mutant("soft-ignored-in-edges", "refined masks are always hard (soft edges lost)",
           "    if not soft:\n        return np.where(p > threshold, np.uint8(255), np.uint8(0))",
           "    if True:\n        return np.where(p > threshold, np.uint8(255), np.uint8(0))",
           (CLI_FILES, "tests/test_refine.py::test_soft_edges_agree_with_hard_mask")),
    Mutant("fusion-threshold-0.5", "fusion threshold raised from 0.35 to 0.5",
           "FUSION_THRESHOLD = 0.35", "FUSION_THRESHOLD = 0.5",
           ("tests/test_p3m_2mp.py", "tests/test_refine.py")),
    Mutant("edge-level-fixed", "the fusion's edge level stays at the 0.25 MP level on large photos",
           "EDGE_LEVEL_LARGE, EDGE_LEVEL_PIXELS = 0.5,", "EDGE_LEVEL_LARGE, EDGE_LEVEL_PIXELS = 0.35,",
           ("tests/test_p3m_2mp.py",)),
    Mutant("soft-matte-blend-ramp", "the soft mask ignores RVM's alpha (the blend's ramp only)",
           "alpha.flat[differ] = to_alpha(p.flat[differ], threshold)",
           "alpha = to_alpha(p, threshold)",
           ("tests/test_p3m_2mp.py",)),
    Mutant("fusion-rvm-weight-to-selfie", "the fusion counts Selfie twice instead of RVM",
           'out += rvm * np.float32(weights["rvm"])', 'out += selfie * np.float32(weights["rvm"])',
           ("tests/test_p3m_2mp.py", "tests/test_refine.py")),
    Mutant("rvm-bgr", "RVM is fed BGR",
           '"src": (small.astype(np.float32) / 255.0)[None],',
           '"src": (small[..., ::-1].astype(np.float32) / 255.0)[None],',
           ("tests/test_p3m_2mp.py", "tests/test_refine.py")),
    Mutant("band-half-pixel", "the edge band samples the working grid half a pixel off",
           "map_x = ((np.arange(W) + 0.5) * (w / W) - 0.5).astype(np.float32)",
           "map_x = (np.arange(W) * (w / W)).astype(np.float32)",
           ("tests/test_p3m_2mp.py",)),
    Mutant("parts-not-masked", "the part map is not restricted to the final person mask",
           "part_map = decode.mask_parts(parts, mask)", "part_map = parts",
           (CLI_FILES, "tests/test_pipeline.py", "tests/test_refine.py")),
    # --- fingers
    Mutant("small-hands-touched", "hands under 12 px are no longer left alone",
           "if hand.presence < MIN_PRESENCE or hand_scale(hand.landmarks) < MIN_HAND_SCALE:",
           "if hand.presence < MIN_PRESENCE:",
           ("tests/test_fingers.py",)),
    Mutant("present-fingers-resnapped", "fingers the mask already has are re-drawn as if missing",
           "if line.any() and person[line].mean() < PRESENT_COVERAGE:", "if line.any():",
           ("tests/test_fingers.py",)),
    # --- the worker (GIMP's side of the core)
    Mutant("worker-selection-keeps-everyone", "a selection around one person selects every person",
           "keep = np.isin(labels, hit[hit > 0])", "keep = np.isin(labels, hit[hit >= 0]) | (labels > 0)",
           ("tests/test_selection.py", "tests/test_gimp_worker.py")),
    Mutant("worker-parts-ignore-selection", "Select Body Parts ignores the selection",
           "mask = np.where(chosen >= 128, mask, np.uint8(0))", "mask = mask",
           ("tests/test_selection.py",)),
    Mutant("worker-rect-origin-dropped", "result rectangles lose the layer offset",
           '"rect": [x + ox, y + oy, w, h]', '"rect": [x, y, w, h]',
           ("tests/test_gimp_worker.py",)),
    Mutant("worker-accurate-is-fast", "quality 'accurate' runs stride 16",
           'QUALITY = {"fast": {"output_stride": 16}, "accurate": {"output_stride": 8}}',
           'QUALITY = {"fast": {"output_stride": 16}, "accurate": {"output_stride": 16}}',
           ("tests/test_selection.py",)),
    Mutant("worker-soft-ignored", "the dialog's soft edges switch is ignored",
           'changes["soft_edges"] = bool(options["soft_edges"])', 'changes["soft_edges"] = False',
           ("tests/test_selection.py",)),
    Mutant("worker-short-read", "a truncated pixel stream is not an error",
           "        if not chunk:\n            raise WorkerError(", "        if False:\n            raise WorkerError(",
           ("tests/test_gimp_worker.py",)),
)


def tree_files(tree: str | None) -> Path:
    """A scratch copy of the working tree (or of commit ``tree``) in a new temp folder."""
    dest = Path(tempfile.mkdtemp(prefix="bodypix-mutant-"))
    if tree:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", tree], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return dest
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.split(b"\0")
    for raw in names:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def locate(core: Path, old: str) -> Path:
    """The one module of ``core/bodypix_gimp`` that contains ``old`` exactly once."""
    hits = [(p, p.read_text().count(old)) for p in sorted((core / "bodypix_gimp").rglob("*.py"))]
    hits = [(p, n) for p, n in hits if n]
    if len(hits) != 1 or hits[0][1] != 1:
        where = ", ".join(f"{p.relative_to(core)} x{n}" for p, n in hits) or "nowhere"
        raise LookupError(f"text must occur exactly once in core/bodypix_gimp, found {where}")
    return hits[0][0]


# With --tree (an older commit, whose tests may lack the targeted files), a mutant also runs the
# old test files of the module it lives in: "before" then means "what the old suite's files for
# that module catch", not "nothing ran".
MODULE_TESTS = {
    "imageio": ("tests/test_cli.py", "tests/test_pipeline.py"),
    "cli_segment": ("tests/test_cli.py", "tests/test_instances.py"),
    "segment": ("tests/test_cli.py", "tests/test_instances.py"),
    "outputs": ("tests/test_cli.py", "tests/test_batch.py"),
    "runner": ("tests/test_cli.py", "tests/test_batch.py"),
    "settings": ("tests/test_settings.py", "tests/test_cli.py"),
    "models": ("tests/test_manifest.py", "tests/test_pipeline.py"),
    "store": ("tests/test_manifest.py", "tests/test_pipeline.py"),
    "pipeline": ("tests/test_pipeline.py", "tests/test_refine.py"),
    "edges": ("tests/test_refine.py", "tests/test_pipeline.py"),
    "fusion": ("tests/test_refine.py", "tests/test_pipeline.py"),
    "matting": ("tests/test_refine.py",),
    "peers": ("tests/test_refine.py",),
    "hands": ("tests/test_hands.py",),
    "fingers": ("tests/test_hands.py",),
    "worker": ("tests/test_gimp_worker.py",),
    "operations": ("tests/test_gimp_worker.py",),
    "protocol": ("tests/test_gimp_worker.py",),
}
SELECT = "not gimp and not reference and not slow"


def pytest_cmd(m: Mutant, tree: Path, module: str | None = None) -> list[str]:
    tests = [t for t in m.tests if (tree / t.split("::")[0]).exists()]
    if module:
        tests += [t for t in MODULE_TESTS.get(module, ()) if (tree / t).exists() and t not in tests]
    if not tests:
        return []
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", SELECT, *m.extra, *tests]
    return [*cmd, "-k", m.k] if m.k else cmd


def run_tests(cmd: list[str], tree: Path, timeout: float) -> tuple[str, float, str]:
    env = dict(os.environ, PYTHONPATH=str(tree / "core"), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("BODYPIX_SHARED", str(ROOT.parent / "shared"))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    tail = (p.stdout + p.stderr).strip().splitlines()
    failed = [ln for ln in tail if ln.startswith(("FAILED", "ERROR"))]
    status = {0: "pass", 1: "fail", 5: "no tests"}.get(p.returncode, f"error rc={p.returncode}")
    return status, time.perf_counter() - t0, (failed[0] if failed else (tail[-1] if tail else ""))


def module_of(core_tree: Path, m: Mutant) -> str | None:
    try:
        return locate(core_tree / "core", m.old).stem
    except LookupError:
        return None


def check_imports_scratch(tree: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree / "core"))
    got = subprocess.run([sys.executable, "-c", "import bodypix_gimp; print(bodypix_gimp.__file__)"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not got.startswith(str(tree)):
        raise SystemExit(f"the scratch copy is not what Python imports ({got}); cannot mutate safely")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--tree", help="git commit whose tree (code and tests) to mutate, default: the working tree")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="folder for mutation.json / mutation.md")
    ap.add_argument("--name", default="mutation", help="report file stem")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per test run (a timeout counts as killed)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of each test selection")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.id for m in MUTANTS}
        if unknown:
            ap.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        mutants = tuple(m for m in MUTANTS if m.id in wanted)
    if args.list:
        for m in mutants:
            print(f"{m.id:32s} {m.what}  [{', '.join(m.tests)}]")
        return 0

    base = tree_files(args.tree)
    check_imports_scratch(base)
    rows: list[dict] = []
    try:
        baseline: dict[tuple[str, ...], str] = {}
        if not args.no_baseline:
            cmds = {tuple(pytest_cmd(m, base, module_of(base, m) if args.tree else None)) for m in mutants}
            for cmd in cmds - {()}:
                status, secs, detail = run_tests(list(cmd), base, args.timeout)
                baseline[cmd] = status
                print(f"baseline {status:8s} {secs:6.0f}s  {' '.join(cmd[9:])}  {detail if status != 'pass' else ''}",
                      flush=True)
        for m in mutants:
            tree = Path(tempfile.mkdtemp(prefix=f"bodypix-mutant-{m.id}-"))
            shutil.copytree(base, tree, dirs_exist_ok=True)
            row = {"id": m.id, "what": m.what, "tests": list(m.tests)}
            try:
                target = locate(tree / "core", m.old)
                row["file"] = str(target.relative_to(tree))
                target.write_text(target.read_text().replace(m.old, m.new))
                module = target.stem if args.tree else None
                cmd = pytest_cmd(m, tree, module)
                if not cmd:
                    status, secs, detail = "SURVIVED", 0.0, "no test file targets this module in this tree"
                elif baseline.get(tuple(pytest_cmd(m, base, module)), "pass") != "pass":
                    status, secs, detail = "baseline failed", 0.0, "the unmutated tree fails these tests"
                else:
                    status, secs, detail = run_tests(cmd, tree, args.timeout)
            except LookupError as e:
                status, secs, detail = "stale", 0.0, str(e)
            finally:
                shutil.rmtree(tree, ignore_errors=True)
            row.update(result={"fail": "killed", "timeout": "killed (timeout)", "pass": "SURVIVED"}.get(
                status, status),
                       seconds=round(secs, 1), detail=detail)
            rows.append(row)
            print(f"{row['result']:16s} {secs:6.0f}s  {m.id:32s} {detail[:110]}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    killed = sum(r["result"].startswith("killed") for r in rows)
    counted = sum(r["result"].startswith(("killed", "SURVIVED")) for r in rows)
    rate = killed / counted if counted else 0.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"tree": args.tree or "working tree", "killed": killed, "counted": counted, "kill_rate": rate,
              "mutants": rows}
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Mutation check ({report['tree']}): {killed}/{counted} killed ({rate:.0%})", "",
             "| mutant | bug | result | killed by / detail | s |", "|---|---|---|---|---|"]
    for r in rows:
        detail = r["detail"].replace("|", "\\|")[:140]
        lines.append(f"| {r['id']} | {r['what']} | {r['result']} | {detail} | {r['seconds']:.0f} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"{killed}/{counted} killed ({rate:.0%}); report: {out / args.name}.md")
    return 0 if rate >= 0.9 and counted == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
