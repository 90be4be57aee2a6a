"""Serving requests: one over a pair of streams, or many on a loopback socket (the model server)."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from ..pipeline import get_model
from ..runtime.sessions import RuntimeOptions
from ..runtime.store import ChecksumError, ModelNotFoundError
from .operations import build_settings, run
from .protocol import PROTOCOL, WorkerError, parse_header, read_exact


def serve(stdin: BinaryIO, stdout: TextIO, alive: Callable[[], bool] | None = None) -> int:
    """Read one request, answer it; returns the exit status (0 done, 2 refused, 3 crashed).

    ``alive()`` says whether anyone still waits for the answer (default: our parent process,
    which GIMP kills when the user cancels); when not, the work stops at the next stage.
    """
    parent = os.getppid()
    alive = alive or (lambda: os.getppid() == parent)
    t0 = time.perf_counter()

    def emit(obj: dict[str, Any]) -> None:
        try:
            stdout.write(json.dumps(obj) + "\n")
            stdout.flush()
        except (BrokenPipeError, ConnectionError, ValueError):
            raise WorkerError("cancelled", "cancelled") from None

    def progress(fraction: float, message: str) -> None:
        # GIMP kills the plug-in when the user cancels; stop instead of finishing for nobody
        if not alive():
            raise WorkerError("cancelled", "cancelled")
        emit({"progress": round(float(fraction), 3), "message": message})

    try:
        req = parse_header(stdin.readline())
        # warm up while the plug-in is still reading pixels out of GIMP
        settings = build_settings(req.options)
        try:
            get_model(settings, RuntimeOptions(models=req.models))
        except (ModelNotFoundError, ChecksumError) as e:
            raise WorkerError(str(e), "model") from None
        t_ready = time.perf_counter()
        raw = read_exact(stdin, req.width * req.height * req.channels)
        rgba = np.frombuffer(raw, np.uint8).reshape(req.height, req.width, req.channels)
        selection = None
        if req.selection:
            sel = read_exact(stdin, req.width * req.height)
            selection = np.frombuffer(sel, np.uint8).reshape(req.height, req.width)
        t_read = time.perf_counter()
        result = run(req, rgba, selection, progress)
        result["worker_ms"] = {
            "startup_and_model": round((t_ready - t0) * 1000, 1),
            "wait_for_pixels": round((t_read - t_ready) * 1000, 1),
            "compute_and_write": round((time.perf_counter() - t_read) * 1000, 1),
        }
        emit({"result": result})
        return 0
    except WorkerError as e:
        if e.kind == "cancelled":
            return 2
        try:
            emit({"error": str(e), "kind": e.kind})
        except WorkerError:
            pass
        return 2
    except Exception as e:  # last resort: one line for GIMP, the traceback for the log
        traceback.print_exc(file=sys.stderr)
        try:
            emit({"error": f"{type(e).__name__}: {e}".splitlines()[0], "kind": "internal"})
        except WorkerError:
            pass
        return 3


# ------------------------------------------------------------------ persistent server ---
# Starting Python, importing numpy/onnxruntime/opencv and loading the model costs about
# 0.6-1 s per click, and onnxruntime's first inference in a process is slower than the
# next ones.  So the plug-in starts one worker server per environment that keeps the
# models loaded and answers on a loopback socket until it has been idle for a while
# (the approach of intel/openvino-ai-plugins-gimp's model servers).  The protocol on a
# connection is the stdin/stdout one, after a token handshake; the token and port sit in
# a state file only the user can read.


def state_dir() -> Path:
    """Per-user folder for server state files (not shared between users)."""
    import getpass
    import tempfile

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"bodypix-gimp-{user}"


def source_stamp() -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of this package's files: a reinstall makes a running server retire."""
    here = Path(__file__).resolve().parents[1]  # the whole bodypix_gimp package
    out = []
    for f in sorted(here.rglob("*.py")):
        st = f.stat()
        out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def serve_forever(state_path: Path, idle_seconds: float, models: str | None = None) -> int:
    """Answer requests on a loopback socket until idle for ``idle_seconds`` or told to quit."""
    import secrets
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    token = secrets.token_hex(16)
    stamp = source_stamp()
    try:  # load the default model before announcing, so the first client does not wait twice
        get_model(build_settings({}), RuntimeOptions(models=models))
    except Exception:
        pass  # the request will report it properly
    me = {"port": sock.getsockname()[1], "token": token, "pid": os.getpid(), "protocol": PROTOCOL,
          "python": sys.executable}  # fmt: skip
    write_state(state_path, me)
    sock.settimeout(idle_seconds)
    try:
        while True:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                return 0
            with conn:
                conn.settimeout(None)
                rfile = conn.makefile("rb")
                wfile = conn.makefile("w", encoding="utf-8")
                try:
                    hello = json.loads(rfile.readline() or b"{}")
                except ValueError:
                    continue
                if hello.get("token") != token:
                    continue
                if hello.get("cmd") == "quit":
                    return 0
                if source_stamp() != stamp:  # reinstalled underneath us: hand over to a fresh process
                    wfile.write(json.dumps({"restart": True}) + "\n")
                    wfile.flush()
                    return 0
                wfile.write(json.dumps({"ready": True}) + "\n")
                wfile.flush()
                try:
                    serve(rfile, wfile, alive=lambda: True)
                except OSError:
                    pass  # the plug-in went away (cancelled); serve the next one
    finally:
        try:
            if json.loads(state_path.read_text()).get("pid") == os.getpid():
                state_path.unlink()
        except (OSError, ValueError):
            pass
        sock.close()


def stop_servers(python: str | None = None) -> int:
    """Tell the servers of this environment (``python``, default this one) to quit."""
    import socket

    python = python or sys.executable
    stopped = 0
    for f in state_dir().glob("*.json"):
        try:
            st = json.loads(f.read_text())
            if st.get("python") != python:
                continue
            with socket.create_connection(("127.0.0.1", st["port"]), timeout=2) as c:
                c.sendall((json.dumps({"token": st["token"], "cmd": "quit"}) + "\n").encode())
            stopped += 1
        except (OSError, ValueError, KeyError):
            pass
        f.unlink(missing_ok=True)
    return stopped
