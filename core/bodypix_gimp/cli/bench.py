"""``bodypix-gimp bench``: speed and peak memory per model and photo size, next to TF.js body-pix."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate import bench
from ..evaluate.bench import (
    DEFAULT_MEMORY_SIZES,
    DEFAULT_SIZES,
    TARGET_PEAK_MB_24MP,
    TARGET_SPEEDUP,
    default_photo,
    machine_info,
    markdown_report,
    markdown_table,
    parse_sizes,
    reference_times,
    resized_photo,
    run_case,
)
from ..imageio import load_image
from ..runtime.store import bodypix_relpath, installed_models, model_path
from ..settings import model_name, parse_model_name
from .segment import add_settings_arguments, runtime_from_args, settings_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the pipeline per model and photo size, next to TF.js body-pix",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", "-o", default="reports", metavar="DIR", help="report folder (default: reports/)")
    p.add_argument("--photo", metavar="IMAGE", help="source photo, resized to each size (default: a shared "
                   "p3m_demo_pseudo 1080p portrait, else samples/astronaut.jpg)")
    p.add_argument("--sizes", metavar="MP,...", help="photo sizes in megapixels, timed next to TF.js "
                   f"(default: {','.join(map(str, DEFAULT_SIZES))}; with --scale 1,12,24)")
    p.add_argument("--memory-sizes", metavar="MP,...", help="sizes measured without the TF.js reference ('' for "
                   f"none; default: {','.join(map(str, DEFAULT_MEMORY_SIZES))}; with --scale 64,150)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case, median reported (default: 3)")
    p.add_argument("--no-reference", action="store_true", help="skip the TF.js comparison")
    p.add_argument("--reference-backend", choices=("wasm", "cpu"), default="wasm",
                   help="TF.js backend to compare with: wasm (SIMD, the fast one; default) or cpu (pure JS, slow)")
    p.add_argument("--quick", action="store_true",
                   help="one small case (first model, 0.25 MP, 1 run, no memory-only sizes): a smoke test for CI")
    p.add_argument("--scale", action="store_true",
                   help="instead: the full-resolution stages and peak memory by photo size, through the CLI "
                   "and segment() (product defaults; writes bench-scale.json/.md; see evaluate/scale.py)")
    p.add_argument("--scale-timeout", type=float, default=900.0, metavar="S",
                   help="with --scale: seconds allowed per measured process (default: %(default)s)")
    add_settings_arguments(p)
    p.set_defaults(func=run)


def bench_models(args: argparse.Namespace, settings: Any) -> list[str]:
    """The models to time: the one the options name, else every installed BodyPix model."""
    if args.model or args.stride is not None:
        return [settings.model_name]
    have = installed_models(args.models)
    names = [n for n in have if have[n] and ("mobilenet" in n or "resnet" in n)]
    if not names:
        return [settings.model_name]  # segment will raise the usual "not installed" message
    default = model_name(settings.architecture, settings.multiplier, settings.quant_bytes, settings.output_stride)
    return sorted(names, key=lambda n: (n != default, n))


def run(args: argparse.Namespace) -> int:
    if args.scale:
        from ..evaluate import scale

        sizes = parse_sizes(args.sizes if args.sizes is not None else ",".join(map(str, scale.DEFAULT_SIZES)))
        memory_sizes = parse_sizes(args.memory_sizes if args.memory_sizes is not None
                                   else ",".join(map(str, scale.DEFAULT_MEMORY_SIZES)))
        return scale.run_scale(args, sizes, memory_sizes, Path(args.photo) if args.photo else default_photo())
    settings = settings_from_args(args)
    runtime = runtime_from_args(args)
    sizes = parse_sizes(args.sizes if args.sizes is not None else ",".join(map(str, DEFAULT_SIZES)))
    memory_sizes = parse_sizes(args.memory_sizes if args.memory_sizes is not None
                               else ",".join(map(str, DEFAULT_MEMORY_SIZES)))
    models = bench_models(args, settings)
    repeat = max(1, args.repeat)
    if args.quick:
        models, sizes, memory_sizes, repeat = models[:1], [min(sizes)], [], 1
    for model in models:  # a missing model is a one-line error before any work or output
        model_path(bodypix_relpath(model), runtime.models)
    photo_path = Path(args.photo) if args.photo else default_photo()
    source = load_image(photo_path)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    raw = settings.replace(refine="none", fingers=False, soft_edges=False)
    extra_stages = raw != settings
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bodypix-bench-") as tmp:
        photos: dict[float, Path] = {}
        for mp in sizes + [m for m in memory_sizes if m not in sizes]:
            img = resized_photo(source, mp)
            photos[mp] = Path(tmp) / f"photo_{mp:g}mp.npy"
            np.save(photos[mp], img)
            del img
        for model in models:
            m_raw = raw.replace(**parse_model_name(model))
            m_full = settings.replace(**parse_model_name(model))
            ref: list[dict[str, Any]] = []
            ref_error = "skipped (--no-reference)" if args.no_reference else None
            if not args.no_reference and sizes:
                ref, ref_error = reference_times([photos[s] for s in sizes], model, m_raw, runtime.models, repeat,
                                                 args.reference_backend)
            for mp in sizes + [m for m in memory_sizes if m not in sizes]:
                shape = np.load(photos[mp], mmap_mode="r").shape
                row: dict[str, Any] = {"model": model, "megapixels": mp, "width": shape[1], "height": shape[0],
                                       "memory_only": mp not in sizes}
                print(f"{model} {shape[1]}x{shape[0]} ...", file=sys.stderr, flush=True)
                row["raw"] = run_case(photos[mp], m_raw, runtime, repeat)
                if extra_stages:
                    row["full"] = run_case(photos[mp], m_full, runtime, repeat)
                if mp in sizes and ref:
                    row["tfjs"] = ref[sizes.index(mp)]
                    ours, theirs = row["raw"].get("ms"), row["tfjs"].get("ms")
                    row["speedup"] = theirs / ours if ours and theirs else None
                elif mp in sizes:
                    row["tfjs"] = {"backend": args.reference_backend, "error": ref_error}
                rows.append(row)
    report = {
        "settings": settings.to_dict(),
        "raw_settings_for_ratio": raw.to_dict(),
        "photo": str(photo_path),
        "repeat": repeat,
        "reference_backend": None if args.no_reference else args.reference_backend,
        "targets": {"speedup_vs_tfjs_wasm": TARGET_SPEEDUP, "peak_rss_mb_24mp": TARGET_PEAK_MB_24MP},
        "machine": machine_info(),
        "command": "bodypix-gimp " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("bodypix-gimp") else None,
        "rows": rows,
    }
    table = markdown_table(rows, extra_stages, args.reference_backend)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    (out_dir / "bench.md").write_text(markdown_report(report, table))
    print(table)
    print(f"\nWrote {out_dir / 'bench.json'} and {out_dir / 'bench.md'}")
    return 0 if all("error" not in r["raw"] for r in rows) else 1
