"""Serving requests: one over a pair of streams (one-shot), or many on a socket (the model server).

Starting Python, importing numpy/onnxruntime/opencv and loading the model costs about
0.6-1 s per click, and onnxruntime's first inference in a process is slower than the next
ones.  So the plug-in starts one worker server per user, Python and models folder that
keeps the models loaded until it has been idle for a while (the approach of
intel/openvino-ai-plugins-gimp's model servers).

The transport (docs/reliability.md has the per-platform table and the probes):

* an ``AF_UNIX`` socket inside the user's private state folder (mode 0700, checked with
  ``lstat``: a planted symlink is refused), peers checked with ``SO_PEERCRED`` where the
  system has it; loopback TCP only where there are no Unix sockets (Windows);
* on both, a challenge-response in both directions before anything else: each side sends
  a fresh nonce and answers the other's with an HMAC under the secret in the state file
  (0600), so the secret never travels and neither side talks to an impostor;
* the handshake has a 5 s deadline and 4 KiB lines, each connection has its own thread,
  and one request computes at a time (a lock), so an idle or hostile connection never
  blocks the next client;
* after the header the server says ``go`` (or the error) before it reads any pixel, and it
  sends ``busy`` every 2 s while a call waits or computes: the client never writes to a
  server that stopped reading, and every wait on either side is bounded;
* one server per state file: it holds ``<key>.lock`` for its whole life; SIGTERM, SIGHUP,
  SIGINT, ``--stop`` and the idle timeout remove its state file and socket.
"""

from __future__ import annotations

import contextlib
import gc
import getpass
import hashlib
import hmac
import json
import os
import secrets
import select
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from ..errors import ChecksumError, ModelNotFoundError
from ..pipeline import get_model
from ..runtime import sessions
from ..runtime.sessions import RuntimeOptions
from .cache import Hasher
from .operations import CACHE, build_settings, run
from .protocol import HEADER_CAP, PROTOCOL, WorkerError, parse_header, read_exact

HANDSHAKE_SECONDS = 5.0  # the whole challenge-response, from accept to "ready"
HANDSHAKE_CAP = 4096  # longest handshake line
HEARTBEAT_SECONDS = 2.0  # "busy" while a call waits for the compute lock or computes
SILENCE_SECONDS = 30.0  # longest wait for the next pixel bytes, or for a client to take a line
START_LOCK_SECONDS = 10.0  # a new server waits this long for a retiring one to let go
MAX_CONNECTIONS = 16  # beyond this, new connections are closed at once
# After an early answer (``handle``'s ``reply``) the server finishes the people for its cache only
# once the plug-in has closed the connection (it has written the selection into GIMP and ended),
# waiting at most WRITE_BACK_SECONDS, then AFTER_CLOSE_SECONDS more while GIMP takes the answer
# back (cut short when another call comes): on 2 cores, with that work beside it, writing a
# 12 MP selection back took 48-101 ms instead of 28-44 (docs/gimp.md).
WRITE_BACK_SECONDS = 1.0
AFTER_CLOSE_SECONDS = 0.2
WRITE_BACK_CAP = 1 << 16  # bytes a client may send meanwhile (the plug-in sends none)
HEAP_KEEP_BYTES = 1 << 30  # glibc's mmap and trim thresholds in the server (one_heap)
# After a call on more pixels than this the server gives its memory back at once; after a
# smaller one it keeps the pages for the next click until ``forget_seconds`` without a call.
KEEP_PIXELS = 25_000_000


class Channel:
    """Where one request comes from and where its answer goes."""

    pixels = 0  # of the request read on it (the server keeps its memory after small calls)

    def read_line(self, cap: int) -> bytes:
        raise NotImplementedError

    def read_exact(self, n: int, hasher: Hasher | None = None) -> bytearray | bytes:
        """``n`` bytes; ``hasher`` is fed each chunk as it arrives."""
        raise NotImplementedError

    def emit(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError


class StreamChannel(Channel):
    """stdin/stdout of a one-shot worker process."""

    def __init__(self, stdin: BinaryIO, stdout: TextIO) -> None:
        self.stdin, self.stdout = stdin, stdout

    def read_line(self, cap: int) -> bytes:
        line = self.stdin.readline(cap + 1)
        if len(line) > cap:
            raise WorkerError(f"the request header is longer than {cap} bytes", "config")
        return line

    def read_exact(self, n: int, hasher: Hasher | None = None) -> bytes:
        data = read_exact(self.stdin, n)
        if hasher is not None:
            hasher.update(data)
        return data

    def emit(self, obj: dict[str, Any]) -> None:
        try:
            self.stdout.write(json.dumps(obj) + "\n")
            self.stdout.flush()
        except (BrokenPipeError, ConnectionError, ValueError):
            raise WorkerError("cancelled", "cancelled") from None


class SocketChannel(Channel):
    """One client connection: bounded reads, locked writes (the heartbeat thread writes too)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.broken = False

    def read_line(self, cap: int, deadline: float | None = None) -> bytes:
        while True:
            i = self.buf.find(b"\n", 0, cap + 1)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > cap:
                raise WorkerError(f"a request line is longer than {cap} bytes", "config")
            wait = SILENCE_SECONDS if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                raise WorkerError("the plug-in did not finish its request in time", "config")
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise WorkerError("the plug-in did not finish its request in time", "config") from None
            if not chunk:
                raise WorkerError("the plug-in closed the connection", "cancelled")
            self.buf += chunk

    def read_json(self, cap: int, deadline: float | None = None) -> dict[str, Any]:
        try:
            msg = json.loads(self.read_line(cap, deadline))
        except ValueError:
            raise WorkerError("not a JSON line", "config") from None
        if not isinstance(msg, dict):
            raise WorkerError("not a JSON object", "config")
        return msg

    def read_exact(self, n: int, hasher: Hasher | None = None) -> bytearray:
        """``n`` bytes into one buffer (no copies of a 100 MP layer); each wait is bounded.

        ``hasher`` gets each chunk as it arrives: the client is still sending (and GIMP still
        reading) meanwhile, so the pixels' hash costs the click almost nothing.
        """
        out = bytearray(n)
        view = memoryview(out)
        got = min(n, len(self.buf))
        view[:got] = self.buf[:got]
        del self.buf[:got]
        if hasher is not None and got:
            hasher.update(view[:got])
        self.sock.settimeout(SILENCE_SECONDS)
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], min(n - got, 1 << 22))
            except TimeoutError:
                raise WorkerError(f"the plug-in sent {got} of {n} bytes and stopped", "config") from None
            if not k:
                raise WorkerError(f"the plug-in sent {got} of {n} bytes", "cancelled")
            if hasher is not None:
                hasher.update(view[got : got + k])
            got += k
        return out

    def emit(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj) + "\n").encode("utf-8")
        with self.lock:
            if self.broken:
                raise WorkerError("cancelled", "cancelled")
            try:
                self.sock.settimeout(SILENCE_SECONDS)
                self.sock.sendall(data)
            except OSError:
                self.broken = True  # the plug-in is gone (GIMP killed it: the user cancelled)
                raise WorkerError("cancelled", "cancelled") from None

    def wait_closed(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait until the client closes the connection, at most ``seconds``, until ``stop`` is
        set (checked every 20 ms), and for at most WRITE_BACK_CAP bytes of anything it sends
        meanwhile (dropped); True when it closed. ``select`` before each ``recv``: the
        heartbeat thread may change the socket's timeout at any moment."""
        deadline = time.monotonic() + seconds
        dropped = 0
        while dropped <= WRITE_BACK_CAP:
            wait = deadline - time.monotonic()
            if wait <= 0 or (stop is not None and stop.is_set()):
                return False
            try:
                readable, _, _ = select.select([self.sock], [], [], min(wait, 0.02))
                if not readable:
                    continue
                chunk = self.sock.recv(4096)
            except (OSError, ValueError):
                return True  # reset or closed under us: gone all the same
            if not chunk:
                return True
            dropped += len(chunk)
        return False

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Say "busy" every HEARTBEAT_SECONDS: the client knows we live, we learn it left."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    self.emit({"busy": True})
                except WorkerError:
                    return

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        try:
            yield
        finally:
            done.set()
            t.join()


def serve(stdin: BinaryIO, stdout: TextIO, alive: Callable[[], bool] | None = None) -> int:
    """One-shot: read one request on stdin, answer on stdout; returns the exit status.

    ``alive()`` says whether anyone still waits for the answer (default: our parent process,
    which GIMP kills when the user cancels); when not, the work stops at the next stage.
    """
    parent = os.getppid()
    return handle(StreamChannel(stdin, stdout), alive or (lambda: os.getppid() == parent))


class Answered(Exception):
    """The client has its answer and nobody keeps the rest (a one-shot worker, no cache): stop."""


def handle(
    channel: Channel,
    alive: Callable[[], bool],
    compute_lock: threading.Lock | None = None,
    header_deadline: float | None = None,
    another_call: threading.Event | None = None,
) -> int:
    """Read one request from ``channel`` and answer it (0 done, 2 refused, 3 crashed).

    Order on the wire: header in; ``go`` (or the error) out before any pixel is read, so a
    client never writes pixels nobody reads; pixels in; progress lines; result or error.
    A Select entry is answered as soon as its mask is final (``operations.run``'s ``reply``);
    the model server then finishes the segmentation for its result cache, without a word to
    the client, once the client has written the selection into GIMP and closed the connection
    (WRITE_BACK_SECONDS, AFTER_CLOSE_SECONDS; ``another_call`` set: another call waits, the
    pause ends); a one-shot worker stops.
    """
    t0 = time.perf_counter()
    answered = False
    keep_going = isinstance(channel, SocketChannel) and CACHE.max_bytes > 0 and CACHE.max_entries > 0

    def progress(fraction: float, message: str) -> None:
        if answered:
            return  # the rest is for the cache: the client has its answer
        # GIMP kills the plug-in when the user cancels; stop instead of finishing for nobody
        if not alive():
            raise WorkerError("cancelled", "cancelled")
        channel.emit({"progress": round(float(fraction), 3), "message": message})

    def reply(result: dict[str, Any]) -> None:
        nonlocal answered
        result["worker_ms"] = {
            "startup_and_model": round((t_ready - t0) * 1000, 1),
            "waited_for_another_call": round((t_lock - t0) * 1000, 1),
            "wait_for_pixels": round((t_read - t_ready) * 1000, 1),
            "hash_while_receiving": round(hasher.seconds * 1000, 1),
            "compute_and_write": round((time.perf_counter() - t_read) * 1000, 1),
            # the whole process's CPU (every thread) and page faults from the last byte to here
            "cpu_after_last_byte": round((time.process_time() - cpu_read) * 1000, 1),
            "page_faults_after_last_byte": minor_faults() - faults_read,
        }
        if result.get("early"):
            progress(1.0, "Done")  # as segment() ends; the rest is not the client's
        channel.emit({"result": result})
        answered = True
        if not keep_going:
            raise Answered
        if result.get("early") and isinstance(channel, SocketChannel):
            next_call = another_call or threading.Event()
            if channel.wait_closed(WRITE_BACK_SECONDS, next_call):
                next_call.wait(AFTER_CLOSE_SECONDS)

    lock = compute_lock or contextlib.nullcontext()
    try:
        if isinstance(channel, SocketChannel):
            req = parse_header(channel.read_line(HEADER_CAP, header_deadline))
        else:
            req = parse_header(channel.read_line(HEADER_CAP))
        channel.pixels = req.width * req.height
        settings = build_settings(req.options)
        with lock:  # one call computes at a time; waiting ones hear "busy"
            t_lock = time.perf_counter()
            # warm up while the plug-in is still reading pixels out of GIMP
            try:
                get_model(settings, RuntimeOptions(models=req.models))
            except (ModelNotFoundError, ChecksumError) as e:
                raise WorkerError(str(e), "model") from None
            channel.emit({"go": True})
            t_ready = time.perf_counter()
            hasher = Hasher()  # the result cache's key, computed while the pixels arrive
            raw = channel.read_exact(req.width * req.height * req.channels, hasher)
            rgba = np.frombuffer(raw, np.uint8).reshape(req.height, req.width, req.channels)
            selection = None
            if req.selection:
                sel = channel.read_exact(req.width * req.height)
                selection = np.frombuffer(sel, np.uint8).reshape(req.height, req.width)
            t_read, cpu_read, faults_read = time.perf_counter(), time.process_time(), minor_faults()
            result = run(req, rgba, selection, progress, settings, hasher.digest(), reply)
            del raw, rgba, selection
            if result is not None:
                reply(result)
        return 0
    except Answered:
        return 0
    except WorkerError as e:
        if e.kind == "cancelled" or answered:
            return 2
        with contextlib.suppress(WorkerError):
            channel.emit({"error": str(e).splitlines()[0] if str(e) else e.kind, "kind": e.kind})
        return 2
    except Exception as e:  # last resort: one line for GIMP, the traceback for the log
        traceback.print_exc(file=sys.stderr)
        if not answered:
            with contextlib.suppress(WorkerError):
                channel.emit({"error": f"{type(e).__name__}: {e}".splitlines()[0], "kind": "internal"})
        return 3


def minor_faults() -> int:
    """This process's minor page faults so far (0 where the system does not count them)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def glibc() -> Any:
    """glibc through ctypes, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def one_heap() -> None:
    """Let every thread allocate from glibc's main heap (``M_ARENA_MAX`` = 1), which ``malloc_trim``
    gives back in full, and keep a call's big blocks in that heap between calls.

    Each connection computes in its own thread, and onnxruntime and OpenCV have their pools:
    with glibc's default of one arena per thread, the big blocks of a call land in thread
    arenas whose top ``malloc_trim`` does not return (~80 MB kept after a 24 MP call).  The
    first fix, every block of 1 MiB or more in its own mapping (``M_MMAP_THRESHOLD``), returned
    that memory too but made each call fault all its pages in afresh: 12 MP, 230 k page faults
    and 0.55 s of system time a call instead of 70 k and 0.2 s in a plain process (1.3 s instead
    of 0.94 s in GIMP); with one heap a call costs what it costs in a plain process
    (docs/reliability.md).  On 2-4 cores one heap's lock is not contended: onnxruntime and
    OpenCV allocate per operation, not per pixel.

    A plain process still faults ~75 k pages (~300 MB) into every 12 MP call, ~0.2 s of system
    time (zeroing them, not the fault count: huge pages fault 14 k times for the same 0.15 s),
    because glibc gives blocks above its mmap threshold (at most 32 MiB by default: a 12 MP
    float map is 48 MB) their own mapping and unmaps them when freed.  With both thresholds
    at ``HEAP_KEEP_BYTES`` every block comes from the heap and stays there after ``free``, so the
    next call reuses pages already faulted in (3 k faults, 0.02 s of system time a 12 MP call);
    ``release_memory`` gives them back when the server has nothing to do (``Server.forget_results``).
    """
    libc = glibc()
    if libc is not None:
        libc.mallopt(-8, 1)  # M_ARENA_MAX; before any other thread allocates
        libc.mallopt(-3, HEAP_KEEP_BYTES)  # M_MMAP_THRESHOLD: big blocks from the heap ...
        libc.mallopt(-1, HEAP_KEEP_BYTES)  # M_TRIM_THRESHOLD: ... and free() keeps them there


def release_memory() -> None:
    """Give the memory of the last call back to the system (the idle server keeps only its models).

    The big arrays are garbage once a call is answered, but glibc keeps freed heap pages
    for reuse; ``malloc_trim`` returns them (measured in docs/reliability.md).
    """
    gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


# ------------------------------------------------------------------ persistent server ---
def state_dir() -> Path:
    """Per-user folder of server state files (same rule as the plug-in's worker_client)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"bodypix-gimp-{user}"


def private_dir(path: Path) -> bool:
    """Make ``path`` (mode 0700) unless it exists; True when only this user can use it.

    ``lstat``, not ``stat``: a symlink planted in a shared /tmp is refused, not followed.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return False
    if os.name == "nt":  # the per-user temporary folder is private by its ACL
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def source_stamp() -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of this package's files: a reinstall makes a running server retire."""
    here = Path(__file__).resolve().parents[1]
    out = []
    for f in sorted(here.rglob("*.py")):
        st = f.stat()
        out.append((str(f.relative_to(here)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically, 0600, never through a link."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            state = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def proof(token: str, role: str, mine: str, theirs: str) -> str:
    """HMAC-SHA256 of both nonces under the secret (the plug-in's worker_client has the twin)."""
    msg = f"{role}|{mine}|{theirs}".encode("ascii", "replace")
    return hmac.new(bytes.fromhex(token), msg, hashlib.sha256).hexdigest()


def peer_uid(sock: socket.socket) -> int | None:
    """The user id at the other end of a Unix socket (None: not known on this system)."""
    if getattr(socket, "AF_UNIX", None) is None or sock.family != socket.AF_UNIX:
        return None
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int version; uid_t uid; ...}
            return struct.unpack_from("=II", sock.getsockopt(0, 1, 76))[1]
    except OSError:
        return None
    return None


def lock_file(path: Path, seconds: float) -> int | None:
    """An exclusive lock on ``path`` held until the returned fd closes; None when taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    deadline = time.monotonic() + seconds
    while True:
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def listen(folder: Path, key: str) -> tuple[socket.socket, dict[str, Any]]:
    """A Unix socket in the private folder where the system has them, else loopback TCP."""
    if hasattr(socket, "AF_UNIX"):
        path = folder / f"{key}.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead server's (we hold the lock: no live one owns it)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o077)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            sock.listen(16)
            return sock, {"socket": str(path)}
        except OSError:  # e.g. a path longer than sun_path allows
            sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, {"port": sock.getsockname()[1]}


class Server:
    """The accept loop's shared state."""

    def __init__(self, token: str, idle_seconds: float, forget_seconds: float = 60.0) -> None:
        self.token = token
        self.idle_seconds = idle_seconds
        self.forget_seconds = forget_seconds
        self.stamp = source_stamp()
        self.compute = threading.Lock()
        self.stop = threading.Event()
        self.count_lock = threading.Lock()
        self.connections = 0
        self.busy = 0
        self.another_call = threading.Event()  # set while more than one call is in ``handle``
        self.last_call = time.monotonic()
        self.trimmed = True  # no call's memory kept in the heap since the last release_memory

    def idle(self) -> bool:
        with self.count_lock:
            return not self.busy and time.monotonic() - self.last_call > self.idle_seconds

    def forget_results(self) -> None:
        """After ``forget_seconds`` without a call, drop the cached results (worker/cache.py)
        and give their memory back, with the heap pages the last calls kept (``one_heap``):
        they serve clicks in a row, not a server idle for minutes."""
        with self.count_lock:
            due = not self.busy and time.monotonic() - self.last_call > self.forget_seconds
        if due and (len(CACHE) or not self.trimmed) and self.compute.acquire(blocking=False):  # never wait
            try:
                CACHE.clear()
                self.trimmed = True
            finally:
                self.compute.release()
            release_memory()

    def connection(self, conn: socket.socket) -> None:
        """One client: the handshake, then (if it asked to run) one request."""
        channel = SocketChannel(conn)
        try:
            deadline = time.monotonic() + HANDSHAKE_SECONDS
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                return
            hello = channel.read_json(HANDSHAKE_CAP, deadline)
            theirs = hello.get("nonce")
            if not isinstance(theirs, str) or not 16 <= len(theirs) <= 128 or not theirs.isalnum():
                return
            mine = secrets.token_hex(16)
            channel.emit({"nonce": mine, "proof": proof(self.token, "server", theirs, mine)})
            reply = channel.read_json(HANDSHAKE_CAP, deadline)
            if not hmac.compare_digest(str(reply.get("proof", "")), proof(self.token, "client", mine, theirs)):
                return
            if reply.get("cmd") == "quit":
                channel.emit({"bye": True})
                self.stop.set()
                return
            if source_stamp() != self.stamp:  # reinstalled underneath us: hand over to a fresh process
                channel.emit({"restart": True})
                self.stop.set()
                return
            channel.emit({"ready": True})
            with self.count_lock:
                self.busy += 1
                if self.busy > 1:
                    self.another_call.set()  # one computes (or pauses after its answer), this one waits
            try:
                with channel.heartbeat():
                    handle(channel, lambda: not channel.broken, self.compute, time.monotonic() + SILENCE_SECONDS,
                           self.another_call)  # fmt: skip
            finally:
                with self.count_lock:
                    self.busy -= 1
                    if self.busy <= 1:
                        self.another_call.clear()
                    self.last_call = time.monotonic()
                if channel.pixels > KEEP_PIXELS:
                    release_memory()  # a very large call's pages are not worth keeping
                else:
                    self.trimmed = False  # kept for the next click (one_heap); forget_results frees them
        except (WorkerError, OSError):
            pass  # a client that does not follow the protocol gets nothing
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
            with self.count_lock:
                self.connections -= 1


def serve_forever(
    state_path: Path, idle_seconds: float, models: str | None = None, forget_seconds: float = 60.0
) -> int:
    """Answer requests on a private socket until idle for ``idle_seconds`` or told to quit;
    cached results are dropped after ``forget_seconds`` without a call."""
    folder = state_path.parent
    if not private_dir(folder):
        print(f"{folder} is not a private folder of this user; not serving", file=sys.stderr)
        return 2
    key = state_path.stem
    lock = lock_file(folder / f"{key}.lock", START_LOCK_SECONDS)
    if lock is None:
        print("another server already serves this state file", file=sys.stderr)
        return 0
    sock, address = listen(folder, key)
    server = Server(secrets.token_hex(32), idle_seconds, forget_seconds)

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), terminate)
    sessions.MEMORY_ARENA = False  # an idle server gives back what a big call took
    one_heap()
    try:
        try:  # load the default model before announcing, so the first client does not wait twice
            get_model(build_settings({}), RuntimeOptions(models=models))
        except Exception:
            pass  # the request will report it properly
        me = {**address, "token": server.token, "pid": os.getpid(), "protocol": PROTOCOL, "python": sys.executable}
        write_state(state_path, me)
        sock.settimeout(0.5)
        while not server.stop.is_set() and not server.idle():
            server.forget_results()
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with server.count_lock:
                full = server.connections >= MAX_CONNECTIONS
                if not full:
                    server.connections += 1
            if full:
                conn.close()
                continue
            threading.Thread(target=server.connection, args=(conn,), daemon=True).start()
        return 0
    finally:
        sock.close()
        state = read_state(state_path)
        if state is not None and state.get("token") == server.token:
            with contextlib.suppress(OSError):
                state_path.unlink()
        if "socket" in address:
            with contextlib.suppress(OSError):
                Path(address["socket"]).unlink()
        os.close(lock)


def state_folders() -> list[Path]:
    """Where servers of this user may be: the native folder and Flatpak GIMP's shared one."""
    folders = [state_dir()]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        folders += sorted(Path(runtime, "app").glob("*/bodypix-gimp"))
    return folders


def stop_servers(python: str | None = None) -> int:
    """Tell the servers of this environment (``python``, default this one) to quit."""
    python = python or sys.executable
    stopped = 0
    for folder in state_folders():
        if not folder.is_dir() or not private_dir(folder):
            continue
        for f in folder.glob("*.json"):
            st = read_state(f)
            if not st or st.get("python") != python:
                continue
            if ask_to_quit(st):
                stopped += 1
                for _ in range(100):  # it removes its own files on the way out
                    if not f.exists():
                        break
                    time.sleep(0.05)
    return stopped


def ask_to_quit(state: dict[str, Any]) -> bool:
    """The client side of the handshake, with ``cmd: quit``; True when the server agreed."""
    try:
        token = str(state["token"])
        if state.get("socket"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.connect(str(state["socket"]))
        else:
            sock = socket.create_connection(("127.0.0.1", int(state["port"])), timeout=2)
    except (OSError, KeyError, ValueError, TypeError):
        return False
    channel = SocketChannel(sock)
    try:
        deadline = time.monotonic() + HANDSHAKE_SECONDS
        uid = peer_uid(sock)
        if uid is not None and uid != os.getuid():
            return False
        mine = secrets.token_hex(16)
        channel.emit({"hello": PROTOCOL, "nonce": mine})
        reply = channel.read_json(HANDSHAKE_CAP, deadline)
        theirs = str(reply.get("nonce", ""))
        if not hmac.compare_digest(str(reply.get("proof", "")), proof(token, "server", mine, theirs)):
            return False
        channel.emit({"proof": proof(token, "client", theirs, mine), "cmd": "quit"})
        return bool(channel.read_json(HANDSHAKE_CAP, deadline).get("bye"))
    except (WorkerError, OSError, ValueError):
        return False
    finally:
        sock.close()
