"""Talk to ``bodypix_gimp.worker`` in the Python environment the installer made.

Runs inside GIMP's own Python, which may be a bundled Python without numpy: only the
standard library is used.  Pixels travel as raw bytes over a pipe (no temporary image
files), results come back as raw files in a private temporary folder.
"""

import getpass
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

CONFIG_NAME = "bodypix-config.json"
ENV_ONESHOT = "BODYPIX_GIMP_ONESHOT"  # set: no model server, one worker process per call
CREATE_NO_WINDOW = 0x08000000  # Windows: no console flashing up
CREATE_NEW_PROCESS_GROUP = 0x00000200
ENV_PYTHON = "BODYPIX_GIMP_PYTHON"  # developer override of the configured worker Python
HERE = os.path.dirname(os.path.abspath(__file__))
REINSTALL = "Run `python installer/install.py` from the bodypix-gimp folder, then restart GIMP."


class BodyPixError(Exception):
    """A one-line message for GIMP's error console; ``kind`` as the worker reports it."""

    def __init__(self, message, kind="internal"):
        super().__init__(message)
        self.kind = kind


def load_config(folder=HERE):
    """The installer's record next to the plug-in: worker Python and models folder."""
    path = os.path.join(folder, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        config = {}
    except (OSError, ValueError) as e:
        raise BodyPixError(f"bodypix-gimp: cannot read {path} ({e}). {REINSTALL}", "config") from None
    python = os.environ.get(ENV_PYTHON) or config.get("python")
    if not python:
        raise BodyPixError(f"bodypix-gimp is not installed completely (no {CONFIG_NAME}). {REINSTALL}", "config")
    config["launcher"] = list(config.get("launcher") or [])
    if not config["launcher"] and not os.path.isfile(python):
        raise BodyPixError(f"bodypix-gimp: its Python environment is missing ({python}). {REINSTALL}", "config")
    config["python"] = python
    return config


class Worker:
    """One worker process for one plug-in call: start early, feed pixels, read results.

    Use as a context manager; the temporary folder and the process are cleaned up on exit.
    """

    def __init__(self, config, request, on_progress=None):
        self.config = config
        self.on_progress = on_progress or (lambda fraction, message: None)
        self.tmp = tempfile.mkdtemp(prefix="bodypix-gimp-")
        self.request = dict(request, outdir=os.path.join(self.tmp, "out"), protocol=1)
        self.request.setdefault("models", config.get("models"))
        self.proc = None
        self.stderr = None
        self.sock = None
        self.wfile = None
        self.rfile = None
        self.mode = None  # "server" or "one-shot"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.stderr, self.wfile, self.rfile, self.sock):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def start(self):
        """Connect to (or start) the model server; else start a one-shot worker process.

        Either way the request header goes out first, so a one-shot worker loads the model
        while GIMP still reads pixels.
        """
        if self._use_server():
            try:
                self.sock = connect_server(self.config)
            except OSError:
                self.sock = None
        if self.sock is not None:
            self.mode = "server"
            self.wfile = self.sock.makefile("wb")
            self.rfile = self.sock.makefile("rb")
        else:
            self.mode = "one-shot"
            self._start_process()
        self._send(json.dumps(self.request).encode("utf-8") + b"\n")
        try:
            self.wfile.flush()  # now, not with the pixels: the worker prepares while GIMP reads them
        except OSError:
            pass

    def _use_server(self):
        # Flatpak: the worker runs on the host (flatpak-spawn), whose /tmp the sandbox cannot see
        return (self.config.get("persistent", True) and not self.config["launcher"]
                and not os.environ.get(ENV_ONESHOT))  # fmt: skip

    def _start_process(self):
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = CREATE_NO_WINDOW
        self.stderr = open(os.path.join(self.tmp, "stderr.txt"), "w+b")
        try:
            self.proc = subprocess.Popen(
                self.config["launcher"] + [self.config["python"], "-m", "bodypix_gimp.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=child_env(), **kwargs
            )  # fmt: skip
        except OSError as e:
            raise BodyPixError(
                "bodypix-gimp: cannot start {} ({}). {}".format(self.config["python"], e, REINSTALL), "config"
            ) from None
        self.wfile = self.proc.stdin
        self.rfile = self.proc.stdout

    def _send(self, data):
        try:
            self.wfile.write(data)
        except (BrokenPipeError, OSError):
            pass  # the worker stopped early; its reason comes on stdout

    def finish(self, pixels, selection=None):
        """Send the pixels (and selection), follow progress, return the result dict."""
        self._send(pixels)
        if selection is not None:
            self._send(selection)
        try:
            if self.proc is not None:
                self.wfile.close()
            else:
                self.wfile.flush()
        except OSError:
            pass
        result = None
        for line in self.rfile:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # stray output of a library; not ours
            if "progress" in msg:
                self.on_progress(msg["progress"], msg.get("message", ""))
            elif "error" in msg:
                raise BodyPixError(msg["error"], msg.get("kind", "internal"))
            elif "result" in msg:
                result = msg["result"]
                break
        if result is None:
            if self.proc is None:
                raise BodyPixError("bodypix-gimp: the model server closed the connection; "
                                   "see " + os.path.join(state_dir(), "server.log"), "internal")  # fmt: skip
            code = self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise BodyPixError(f"bodypix-gimp worker failed (exit {code}): {tail[0]}", "internal")
        result["mode"] = self.mode
        return result

    def read_item(self, item):
        """Raw bytes of one result item."""
        with open(os.path.join(self.request["outdir"], item["file"]), "rb") as f:
            return f.read()


# ----------------------------------------------------------------------- model server ---
def child_env():
    """GIMP's environment minus what would make the venv's Python load GIMP's modules."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}


def state_dir():
    """Per-user folder of server state files (same rule as bodypix_gimp.worker.server.state_dir)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), "bodypix-gimp-" + user)


def private_dir(path):
    """True when only this user can use ``path`` (POSIX owner and mode; Windows: per-user temp)."""
    if os.name == "nt":
        return True
    st = os.stat(path)
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def state_path(config):
    key = hashlib.sha1((config["python"] + "|" + str(config.get("models"))).encode("utf-8")).hexdigest()[:12]
    return os.path.join(state_dir(), key + ".json")


def read_state(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def handshake(state):
    """A socket to a live server of ours, or None (stale file, other program, retiring server)."""
    try:
        sock = socket.create_connection(("127.0.0.1", int(state["port"])), timeout=2)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    try:
        sock.sendall((json.dumps({"token": state.get("token"), "cmd": "run"}) + "\n").encode("utf-8"))
        sock.settimeout(300)  # it may be finishing another call first
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
        if json.loads(reply or b"{}").get("ready"):
            sock.settimeout(None)
            return sock
    except (OSError, ValueError):
        pass
    sock.close()
    return None


def connect_server(config, wait=60.0):
    """Connect to this environment's model server, starting it when none answers."""
    os.makedirs(state_dir(), mode=0o700, exist_ok=True)
    if not private_dir(state_dir()):
        return None  # someone else made the folder: do not trust its state files
    path = state_path(config)
    old = read_state(path)
    if old:
        sock = handshake(old)
        if sock is not None:
            return sock
    log = open(os.path.join(state_dir(), "server.log"), "ab")
    cmd = [config["python"], "-m", "bodypix_gimp.worker", "--serve", path,
           "--idle", str(config.get("server_idle_seconds", 600))]  # fmt: skip
    if config.get("models"):
        cmd += ["--models", config["models"]]
    kwargs = {"start_new_session": True} if os.name != "nt" else \
        {"creationflags": CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP}  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env(),
                            close_fds=True, **kwargs)  # fmt: skip
    log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        state = read_state(path)
        if state and state.get("pid") == proc.pid:
            return handshake(state)
        if proc.poll() is not None:
            return None  # it could not start (the log says why); fall back to one-shot
        time.sleep(0.02)
    return None
