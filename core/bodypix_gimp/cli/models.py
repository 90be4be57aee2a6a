"""``bodypix-gimp models``: the model names and which ones are installed."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model names and which are installed")
    p.add_argument("--models", metavar="DIR", help="models folder (default: $BODYPIX_MODELS, then the installed one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ModelNotFoundError
    from ..runtime.manifest import bodypix_variants
    from ..runtime.store import AUX_MODELS, installed_models, models_dir
    from ..settings import default_settings

    try:
        where = str(models_dir(args.models))
    except ModelNotFoundError as e:
        where = f"(none) {e}"
    have = installed_models(args.models)
    default = default_settings().model_name
    print(f"Models folder: {where}")
    print("BodyPix variants:")
    for name, spec in bodypix_variants().items():
        mark = "installed" if have.get(name) else "-"
        tag = "  (default)" if name == default else ""
        print(f"  {name:32s} {mark:10s} {spec['architecture']}{tag}")
    print("Helper models:")
    for name in AUX_MODELS:
        print(f"  {name:32s} {'installed' if have.get(name) else '-'}")
    return 0
