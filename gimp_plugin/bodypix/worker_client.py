"""Talk to ``bodypix_gimp.worker`` in the Python environment the installer made.

Runs inside GIMP's own Python, which may be a bundled Python without numpy: only the
standard library is used.  Pixels travel as raw bytes over a pipe (no temporary image
files), results come back as raw files in a private temporary folder.
"""

import json
import os
import shutil
import subprocess
import tempfile

CONFIG_NAME = "bodypix-config.json"
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
        raise BodyPixError(
            f"bodypix-gimp is not installed completely (no {CONFIG_NAME}). {REINSTALL}", "config"
        )
    config["launcher"] = list(config.get("launcher") or [])
    if not config["launcher"] and not os.path.isfile(python):
        raise BodyPixError(
            f"bodypix-gimp: its Python environment is missing ({python}). {REINSTALL}", "config"
        )
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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.stderr is not None:
            self.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def start(self):
        """Start the process and send the header, so it loads the model while GIMP reads pixels."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = 0x08000000  # CREATE_NO_WINDOW: no console flashing up
        self.stderr = open(os.path.join(self.tmp, "stderr.txt"), "w+b")
        try:
            self.proc = subprocess.Popen(
                self.config["launcher"] + [self.config["python"], "-m", "bodypix_gimp.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env, **kwargs
            )  # fmt: skip
        except OSError as e:
            raise BodyPixError(
                "bodypix-gimp: cannot start {} ({}). {}".format(self.config["python"], e, REINSTALL), "config"
            ) from None
        self._send(json.dumps(self.request).encode("utf-8") + b"\n")

    def _send(self, data):
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            pass  # the worker stopped early; its reason comes on stdout

    def finish(self, pixels, selection=None):
        """Send the pixels (and selection), follow progress, return the result dict."""
        self._send(pixels)
        if selection is not None:
            self._send(selection)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        result = None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # stray output of a library; not ours
            if "progress" in msg:
                self.on_progress(msg["progress"], msg.get("message", ""))
            elif "error" in msg:
                self.proc.wait()
                raise BodyPixError(msg["error"], msg.get("kind", "internal"))
            elif "result" in msg:
                result = msg["result"]
        code = self.proc.wait()
        if result is None:
            self.stderr.seek(0)
            tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise BodyPixError(f"bodypix-gimp worker failed (exit {code}): {tail[0]}", "internal")
        return result

    def read_item(self, item):
        """Raw bytes of one result item."""
        with open(os.path.join(self.request["outdir"], item["file"]), "rb") as f:
            return f.read()
