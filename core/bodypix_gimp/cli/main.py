"""``bodypix-gimp``: the pipeline without GIMP (segment, models, eval, bench, ...).

Each subcommand lives in its own module exposing ``add_parser(subparsers)``; the parser's
``func(args) -> int`` runs it.  Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add a subcommand; a missing optional module is skipped.
SUBCOMMANDS = [
    "bodypix_gimp.cli.segment",
    "bodypix_gimp.cli.models",
    "bodypix_gimp.cli.setup_models",
    "bodypix_gimp.cli.bench",
    "bodypix_gimp.cli.eval",
    "bodypix_gimp.cli.eval_persons",
    "bodypix_gimp.cli.hands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bodypix-gimp",
        description="Person and body-part segmentation (BodyPix 2.0 on onnxruntime) for GIMP and the command line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.add_parser(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    from ..errors import ChecksumError, ConfigError, InputError, ModelNotFoundError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, InputError, ModelNotFoundError, ChecksumError, ValueError) as e:
        print(f"bodypix-gimp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bodypix-gimp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
