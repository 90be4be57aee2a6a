"""Talk to ``bodypix_gimp.worker`` in the Python environment the installer made.

Runs inside GIMP's own Python, which may be a bundled Python without numpy: only the
standard library is used.  Pixels travel as raw bytes over a socket or a pipe (no temporary
image files); results come back as raw files in a private per-call folder.

Two ways to reach the worker (docs/reliability.md says which platform uses which and why):

* the model server, started once and kept warm: on POSIX an ``AF_UNIX`` socket inside the
  user's private (0700) state folder, else loopback TCP; either way both ends prove they
  know the secret in the state file (challenge-response, the secret never travels) and,
  on Unix sockets, that the peer runs as the same user, before any pixel moves;
* one worker process per call (``python -m bodypix_gimp.worker``, pixels over stdin), the
  fallback whenever no server can be used.

Every blocking step has a time limit, and pixels are sent to a server only after it said
``go``, while its replies are read, so an early error reaches GIMP at once.
"""

import errno
import getpass
import hashlib
import hmac
import json
import os
import queue
import secrets
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

CONFIG_NAME = "bodypix-config.json"
ENV_ONESHOT = "BODYPIX_GIMP_ONESHOT"  # set: no model server, one worker process per call
CREATE_NO_WINDOW = 0x08000000  # Windows: no console flashing up
CREATE_NEW_PROCESS_GROUP = 0x00000200
ENV_PYTHON = "BODYPIX_GIMP_PYTHON"  # developer override of the configured worker Python
HERE = os.path.dirname(os.path.abspath(__file__))
REINSTALL = "Run `python installer/install.py` from the bodypix-gimp folder, then restart GIMP."

PROTOCOL = 2
CONNECT_SECONDS = 2.0  # connecting to a server that is there takes milliseconds
HANDSHAKE_SECONDS = 5.0  # the whole challenge-response, both ways
SILENCE_SECONDS = 30.0  # a working server says something (progress or "busy") every 2 s
START_SECONDS = 60.0  # a new server imports onnxruntime and loads the model
LINE_CAP = 64 << 20  # longest reply line accepted (pose paths of many people stay far below)
CHUNK = 1 << 20
# Connections of calls with ``Worker.linger`` set: the system closes them when the plug-in
# process ends.
LINGERING = []


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
    if not isinstance(config, dict):
        raise BodyPixError(f"bodypix-gimp: {path} is not a settings file. {REINSTALL}", "config")
    python = os.environ.get(ENV_PYTHON) or config.get("python")
    if not python:
        raise BodyPixError(f"bodypix-gimp is not installed completely (no {CONFIG_NAME}). {REINSTALL}", "config")
    config["launcher"] = list(config.get("launcher") or [])
    if not config["launcher"] and not os.path.isfile(python):
        raise BodyPixError(f"bodypix-gimp: its Python environment is missing ({python}). {REINSTALL}", "config")
    config["python"] = python
    return config


class Worker:
    """One plug-in call: connect (or start a worker), feed pixels, read results.

    Use as a context manager; the call's folder and a one-shot process are cleaned up on
    exit (a call GIMP killed leaves its folder for the next call to sweep).
    """

    def __init__(self, config, request, on_progress=None):
        self.config = config
        self.on_progress = on_progress or (lambda fraction, message: None)
        self.tmp = call_dir(config)
        self.request = dict(request, outdir=os.path.join(self.tmp, "out"), protocol=PROTOCOL)
        self.request.setdefault("models", config.get("models"))
        self.proc = None
        self.stderr = None
        self.conn = None  # a Connection to the model server
        self.wfile = None
        self.rfile = None
        self.mode = None  # "server" or "one-shot"
        self.sent_at = None  # time.perf_counter() when the last pixel byte went out
        # True: a call that ends without an error keeps its server connection open until this
        # process ends. After an early answer the server finishes its cache's work only once
        # the connection closes (or after a bounded wait), so the plug-in writes the selection
        # and GIMP takes it back without the server competing for the CPU.
        self.linger = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        conn = self.conn
        if conn is not None and self.linger and exc[0] is None:
            LINGERING.append(conn)
            conn = None
        for f in (self.stderr, self.wfile, self.rfile, conn):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def start(self):
        """Connect to (or start) the model server; else start a one-shot worker process.

        Either way the request header goes out first, so the worker checks it and loads the
        model while GIMP still reads pixels.
        """
        if self._use_server():
            try:
                self.conn = connect_server(self.config)
            except OSError:
                self.conn = None
        if self.conn is not None:
            self.mode = "server"
            try:
                self.conn.send_line(self.request)
            except OSError:
                pass  # the reason (if any) is read in finish()
            return
        self.mode = "one-shot"
        self._start_process()
        self._send(json.dumps(self.request).encode("utf-8") + b"\n")
        try:
            self.wfile.flush()  # now, not with the pixels: the worker prepares while GIMP reads them
        except OSError:
            pass

    def _use_server(self):
        return (self.config.get("persistent", True) and not os.environ.get(ENV_ONESHOT)
                and state_dir(self.config) is not None)  # fmt: skip

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
        """Send the pixels (and selection), follow progress, return the result dict.

        ``pixels``: one bytes-like object, or an iterable of them (strips, sent as they come).
        ``self.sent_at`` (``time.perf_counter()``) is when the last byte went out.
        """
        if isinstance(pixels, (bytes, bytearray, memoryview)):
            pixels = [pixels]
        if self.conn is not None:
            result = self._finish_server(pixels, selection)
        else:
            result = self._finish_process(pixels, selection)
        result["mode"] = self.mode
        return result

    def _handle(self, msg):
        """One reply line: progress is shown, an error raised; returns the message."""
        if "progress" in msg:
            self.on_progress(msg["progress"], msg.get("message", ""))
        elif "error" in msg:
            raise BodyPixError(str(msg["error"]), str(msg.get("kind", "internal")))
        return msg

    def _finish_server(self, pixels, selection):
        conn = self.conn
        try:
            while "go" not in self._handle(conn.read_message()):  # an early error is raised here
                pass
            sender = Sender(conn)
            try:
                for chunk in pixels:
                    if not sender.put(chunk):
                        break  # the send stopped (the server's error, a broken connection)
                if selection is not None:
                    sender.put(selection)
            finally:
                sender.finish()
            for msg in sender.replies:  # progress shown and errors raised here, in GIMP's thread
                self._handle(msg)
            if sender.error is not None:
                raise sender.error
            self.sent_at = time.perf_counter()
            while True:
                msg = self._handle(conn.read_message())
                if "result" in msg:
                    return msg["result"]
        except (OSError, ValueError) as e:
            raise BodyPixError(
                f"bodypix-gimp: the model server stopped answering ({e}); see {server_log(self.config)}", "internal"
            ) from None

    def _finish_process(self, pixels, selection):
        for chunk in pixels:
            self._send(chunk)
        if selection is not None:
            self._send(selection)
        try:
            self.wfile.close()
        except OSError:
            pass
        self.sent_at = time.perf_counter()
        for line in self.rfile:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # stray output of a library; not ours
            if isinstance(msg, dict) and "result" in self._handle(msg):
                return msg["result"]
        code = self.proc.wait()
        self.stderr.seek(0)
        tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise BodyPixError(f"bodypix-gimp worker failed (exit {code}): {tail[0]}", "internal")

    def read_item(self, item):
        """Raw bytes of one result item."""
        with open(os.path.join(self.request["outdir"], os.path.basename(item["file"])), "rb") as f:
            return f.read()


# ------------------------------------------------------------------ folders and locks ---
def child_env():
    """GIMP's environment minus what would make the venv's Python load GIMP's modules."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}


def user_name():
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


def state_dir(config=None):
    """Folder of the model server's state, socket and lock files (private to the user).

    Native GIMP: ``<temp>/bodypix-gimp-<user>`` (the rule of ``bodypix_gimp.worker.server.state_dir``).
    Flatpak GIMP runs the worker on the host (``flatpak-spawn --host``), whose /tmp the
    sandbox does not see; both see ``$XDG_RUNTIME_DIR/app/$FLATPAK_ID``.  None when the
    sandbox does not say where that is (then each call runs a one-shot worker).
    """
    if config and config.get("launcher"):
        runtime, app = os.environ.get("XDG_RUNTIME_DIR"), os.environ.get("FLATPAK_ID")
        if not runtime or not app:
            return None
        return os.path.join(runtime, "app", app, "bodypix-gimp")
    return os.path.join(tempfile.gettempdir(), "bodypix-gimp-" + user_name())


def private_dir(path):
    """Make ``path`` (one level, mode 0700) unless it exists; True when only we can use it.

    ``lstat``: a symlink planted there is refused, not followed.  POSIX: owned by us, no
    group or other bits.  Windows: the per-user temporary folder is private by its ACL.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return False
    if os.name == "nt":
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def call_dir(config):
    """A fresh private folder for one call's results, under the state folder when usable.

    There the next call removes the folders of calls whose plug-in process is gone (GIMP
    kills the plug-in when the user cancels, so it cannot clean up itself); for Flatpak
    the host's worker can write there too.
    """
    base = state_dir(config)
    if base is not None and private_dir(base) and private_dir(os.path.join(base, "calls")):
        calls = os.path.join(base, "calls")
        sweep_calls(calls)
        return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=calls)
    return tempfile.mkdtemp(prefix="bodypix-gimp-")


def sweep_calls(calls):
    """Remove the call folders whose plug-in process has ended."""
    try:
        names = os.listdir(calls)
    except OSError:
        return
    for name in names:
        pid = name.split("-", 1)[0]
        path = os.path.join(calls, name)
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if os.name == "nt":  # no cheap safe liveness test for a pid: an hour is longer than any call
            try:
                gone = time.time() - os.lstat(path).st_mtime > 3600
            except OSError:
                continue
        else:
            gone = not pid_alive(int(pid))
        if gone:
            shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid):
    """POSIX: whether process ``pid`` exists (signal 0 checks without sending anything).

    Windows: always True; there ``os.kill`` would end the process (or send it Ctrl+C).
    """
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # exists, but someone else's (or a nonsense pid: treat as not ours below)
    return True


class FileLock:
    """An exclusive lock on a file in the private folder (fcntl on POSIX, msvcrt on Windows)."""

    def __init__(self, path, timeout):
        self.path, self.timeout, self.fd = path, timeout, None

    def __enter__(self):
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        self.fd = os.open(self.path, flags, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                lock_fd(self.fd)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise
                time.sleep(0.05)

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        return False


def lock_fd(fd):
    """Take an exclusive lock on ``fd`` without waiting; OSError when someone holds it."""
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ----------------------------------------------------------------------- model server ---
def server_key(config):
    return hashlib.sha1((config["python"] + "|" + str(config.get("models"))).encode("utf-8")).hexdigest()[:12]


def state_path(config):
    return os.path.join(state_dir(config), server_key(config) + ".json")


def server_log(config):
    return os.path.join(state_dir(config) or tempfile.gettempdir(), "server.log")


def read_state(path):
    """The server's state file as a dict, or None (missing, unreadable, not ours, too big)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            state = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def proof(token, role, mine, theirs):
    """HMAC-SHA256 of the two nonces under the shared secret; ``role`` keeps the two
    directions apart, so one side's proof cannot be replayed as the other's."""
    key = bytes.fromhex(token)
    return hmac.new(key, f"{role}|{mine}|{theirs}".encode("ascii"), hashlib.sha256).hexdigest()


def peer_uid(sock):
    """The user id of the process at the other end of a Unix socket, or None when unknown."""
    if getattr(socket, "AF_UNIX", None) is None or sock.family != socket.AF_UNIX:
        return None
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            return uid
        if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int version; uid_t uid; ...}
            raw = sock.getsockopt(0, 1, 76)  # SOL_LOCAL, LOCAL_PEERCRED
            return struct.unpack_from("=II", raw)[1]
    except OSError:
        return None
    return None


class Connection:
    """A socket with bounded line reads (time and size) and a watched pixel send."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def send_line(self, obj):
        self.sock.settimeout(HANDSHAKE_SECONDS)
        self.sock.sendall(json.dumps(obj).encode("utf-8") + b"\n")

    def read_line(self, seconds, cap=LINE_CAP, deadline=None):
        """One line; each wait for data lasts at most ``seconds`` (all of it: ``deadline``)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > cap:
                raise ValueError("reply line too long")
            wait = seconds if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError("no answer in time")
            self.sock.settimeout(wait)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "connection closed")
            self.buf += chunk

    def read_message(self, seconds=SILENCE_SECONDS, deadline=None, cap=LINE_CAP):
        """The next JSON object, skipping the server's keep-alive lines."""
        while True:
            msg = json.loads(self.read_line(seconds, cap, deadline))
            if not isinstance(msg, dict):
                raise ValueError("not a message")
            if "busy" not in msg:
                return msg

    def send_watching(self, data, handle):
        """Send ``data`` while reading replies: an error raised by ``handle`` stops the send
        at once, and a peer that neither reads nor answers for SILENCE_SECONDS is an error.
        (A plain ``sendall`` would block as long as a server that stopped reading lives.)"""
        view = memoryview(data).cast("B")
        sent = 0
        self.sock.settimeout(0)
        try:
            while sent < len(view):
                readable, writable, _ = select.select([self.sock], [self.sock], [], SILENCE_SECONDS)
                if not readable and not writable:
                    raise TimeoutError("the model server stopped reading")
                if readable:
                    try:
                        chunk = self.sock.recv(65536)
                    except BlockingIOError:
                        chunk = None
                    if chunk == b"":
                        raise ConnectionResetError(errno.ECONNRESET, "connection closed")
                    if chunk:
                        self.buf += chunk
                        while b"\n" in self.buf:
                            i = self.buf.find(b"\n")
                            line = bytes(self.buf[:i])
                            del self.buf[: i + 1]
                            msg = json.loads(line)
                            if isinstance(msg, dict):
                                handle(msg)
                if writable:
                    try:
                        sent += self.sock.send(view[sent : sent + CHUNK])
                    except BlockingIOError:
                        pass
        except OSError:
            # the server went away: its last words (an error line) may still be buffered
            self.sock.settimeout(0.5)
            try:
                while True:
                    handle(self.read_message(0.5))
            except (OSError, ValueError):
                pass
            raise


class Sender:
    """Sends byte strips on a Connection from a thread of its own, so the plug-in reads the next
    strip of the layer out of GIMP while the last one travels: PyGObject lets go of Python's lock
    during GEGL's reads, and the socket calls do too (12 MP: the reads and the send took 50-60 ms
    each, one after the other).

    The thread only sends and reads replies (``Connection.send_watching``, with its bounded
    waits); it keeps them for the caller, which shows the progress and raises an error in its
    own thread, the only one that talks to GIMP. At most ``DEPTH`` strips wait in between.
    """

    DEPTH = 4

    def __init__(self, conn):
        self.conn = conn
        self.queue = queue.Queue(self.DEPTH)
        self.replies = []
        self.error = None  # what stopped the send (OSError, ValueError: the connection broke)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bodypix-send", daemon=True)
        self.thread.start()

    def _keep(self, msg):
        self.replies.append(msg)
        if "error" in msg:
            raise _ServerSaidError  # no more pixels for a server that gave up on them

    def _run(self):
        try:
            while True:
                chunk = self.queue.get()
                if chunk is None:
                    return
                self.conn.send_watching(chunk, self._keep)
        except _ServerSaidError:
            pass  # the caller raises the error from the kept replies
        except Exception as e:  # the caller raises it (OSError, ValueError: the connection broke)
            self.error = e
        finally:
            self.done.set()

    def put(self, chunk):
        """Queue ``chunk`` for sending; False when the send has stopped (nothing more is sent)."""
        while not self.done.is_set():
            try:
                self.queue.put(chunk, timeout=0.1)  # woken as soon as the thread takes a strip
                return True
            except queue.Full:
                pass
        return False

    def finish(self):
        """Wait until everything queued is sent or the send has stopped."""
        self.put(None)
        self.done.wait()


class _ServerSaidError(Exception):
    pass


def handshake(state, cmd="run"):
    """A Connection to a live server of ours, or None (stale file, other program, retiring).

    Both ends prove they know ``state["token"]`` without sending it: the client's proof
    goes out only after the server proved itself, and no request or pixel before that.
    On a Unix socket the server must also run as this user.
    """
    try:
        token = str(state["token"])
        bytes.fromhex(token)
        if state.get("socket"):
            if getattr(socket, "AF_UNIX", None) is None:
                return None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_SECONDS)
            try:
                sock.connect(str(state["socket"]))
            except OSError:
                sock.close()
                return None
        else:
            sock = socket.create_connection(("127.0.0.1", int(state["port"])), timeout=CONNECT_SECONDS)
    except (OSError, KeyError, ValueError, TypeError, OverflowError):
        return None
    conn = Connection(sock)
    try:
        uid = peer_uid(sock)
        if uid is not None and hasattr(os, "getuid") and uid != os.getuid():
            raise ValueError("server runs as another user")
        deadline = time.monotonic() + HANDSHAKE_SECONDS
        mine = secrets.token_hex(16)
        conn.send_line({"hello": PROTOCOL, "nonce": mine})
        reply = conn.read_message(deadline=deadline, cap=4096)
        theirs = str(reply.get("nonce", ""))
        if not theirs or not hmac.compare_digest(str(reply.get("proof", "")), proof(token, "server", mine, theirs)):
            raise ValueError("the server did not prove itself")
        conn.send_line({"proof": proof(token, "client", theirs, mine), "cmd": cmd})
        if conn.read_message(deadline=deadline, cap=4096).get("ready"):
            return conn
    except (OSError, ValueError, AttributeError):
        pass
    conn.close()
    return None


def connect_server(config, wait=START_SECONDS):
    """Connect to this environment's model server, starting it when none answers.

    One server per user, Python and models folder: start-up happens under a lock file, and
    the server itself holds another for its whole life.  None: use a one-shot worker.
    """
    folder = state_dir(config)
    if folder is None or not private_dir(folder):
        return None  # someone else made the folder (or planted a link): trust nothing in it
    path = state_path(config)
    old = read_state(path)
    if old:
        conn = handshake(old)
        if conn is not None:
            return conn
    try:
        lock = FileLock(os.path.join(folder, server_key(config) + ".start.lock"), wait)
        lock.__enter__()
    except OSError:
        return None
    try:
        return start_server(config, path, wait)
    finally:
        lock.__exit__(None, None, None)


def start_server(config, path, wait):
    """Under the start-up lock: use the server another call just started, else start one."""
    old = read_state(path)
    if old:
        conn = handshake(old)
        if conn is not None:
            return conn
        if not config["launcher"] and isinstance(old.get("pid"), int) and not pid_alive(old["pid"]):
            remove_stale(path, old)  # SIGKILL or an OOM kill left it
    log = open(server_log(config), "ab")
    cmd = config["launcher"] + [config["python"], "-m", "bodypix_gimp.worker", "--serve", path,
                                "--idle", str(config.get("server_idle_seconds", 600))]  # fmt: skip
    if config.get("models"):
        cmd += ["--models", config["models"]]
    if config.get("server_forget_seconds") is not None:
        cmd += ["--forget", str(config["server_forget_seconds"])]
    kwargs = {"start_new_session": True} if os.name != "nt" else \
        {"creationflags": CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP}  # fmt: skip
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env(),
                                close_fds=True, **kwargs)  # fmt: skip
    except OSError:
        return None
    finally:
        log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        state = read_state(path)
        if state and (not old or state.get("token") != old.get("token")):
            return handshake(state)
        if proc.poll() is not None:
            state = read_state(path)  # it may have found a server started by someone else
            return handshake(state) if state else None
        time.sleep(0.02)
    return None


def remove_stale(path, state):
    """Remove a dead server's state file and socket (both in our private folder)."""
    sock = state.get("socket")
    for p in (path, sock if isinstance(sock, str) and os.path.dirname(sock) == os.path.dirname(path) else None):
        if p:
            try:
                os.unlink(p)
            except OSError:
                pass
