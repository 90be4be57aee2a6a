"""``bodypix-gimp setup-models``: install the models (offline from a folder, or by download)."""

from __future__ import annotations

import argparse
import sys

from ..runtime.manifest import BODYPIX_BASE_URL, ManifestError
from ..setup import npm
from ..setup.convert import ConversionError
from ..setup.download import DownloadError
from ..setup.install import SetupError, install


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup-models",
        help="install the models: from a local folder of official files (--from) or by download",
        description="Install BodyPix (converted from the official TF.js files to ONNX, no TensorFlow needed) "
        "and the helper models into the models folder.",
    )
    p.add_argument("--from", dest="models_from", metavar="DIR",
                   help="a folder laid out like shared/models (offline install); default: download")
    p.add_argument("--target", metavar="DIR", help="models folder to fill (default: the per-user data folder)")
    p.add_argument("--variant", action="append", metavar="NAME",
                   help="BodyPix variant, repeatable (default: the verified ones; see `bodypix-gimp models`)")
    p.add_argument("--no-aux", action="store_true", help="skip the helper models (hands, RVM, selfie)")
    p.add_argument("--convert", action="store_true", help="convert from TF.js files even where an ONNX copy exists")
    p.add_argument("--base-url", metavar="URL", help=f"mirror of {BODYPIX_BASE_URL}")
    p.add_argument("--npm-registry", metavar="URL", help=f"mirror of {npm.REGISTRY} (helper models)")
    p.add_argument("--tfjs-dilation", action="store_true",
                   help="keep TF.js's asymmetric (d,1) dilation in stride-8 models (reproduces the JS runtime)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tty = sys.stderr.isatty()

    def show(fraction: float, message: str) -> None:
        print(f"\r[{fraction * 100:5.1f}%] {message[:70]:70s}", end="", file=sys.stderr, flush=True)

    try:
        result = install(args.target, args.models_from, args.variant, [] if args.no_aux else None,
                         progress=show if tty else None, convert=args.convert,
                         base_url=args.base_url, dilation="tfjs" if args.tfjs_dilation else "fixed",
                         npm_registry=args.npm_registry)
    except (SetupError, DownloadError, ConversionError, ManifestError) as e:
        print(f"{chr(10) if tty else ''}bodypix-gimp: error: {e}", file=sys.stderr)
        return 2
    if tty:
        print(file=sys.stderr)
    print(f"Installed {len(result.installed)} file(s) into {result.target} in {result.seconds:.1f} s")
    for rel in sorted(result.installed):
        print(f"  {rel}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
