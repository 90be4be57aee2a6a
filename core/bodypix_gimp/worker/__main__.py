"""``python -m bodypix_gimp.worker``: one request on stdin; ``--serve STATE``; ``--stop``.

The GIMP plug-in starts the worker this way (gimp_plugin/bodypix/worker_client.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .server import serve, serve_forever, stop_servers


def main(argv: list[str] | None = None) -> int:
    """``-m bodypix_gimp.worker``: one request on stdin; ``--serve STATE``; ``--stop``."""
    ap = argparse.ArgumentParser(prog="python -m bodypix_gimp.worker")
    ap.add_argument("--serve", metavar="STATE_FILE", help="keep running, answer on a private socket")
    ap.add_argument("--idle", type=float, default=600.0, help="--serve: quit after this many idle seconds")
    ap.add_argument("--models", help="--serve: models folder to preload from")
    ap.add_argument(
        "--forget", type=float, default=60.0, help="--serve: drop cached results after this many idle seconds"
    )
    ap.add_argument("--stop", action="store_true", help="stop the servers of this environment")
    args = ap.parse_args(argv)
    if args.stop:
        print(f"stopped {stop_servers()} server(s)")
        return 0
    if args.serve:
        return serve_forever(Path(args.serve), args.idle, args.models, args.forget)
    return serve(sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
