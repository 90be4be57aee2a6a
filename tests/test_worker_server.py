"""The model server as a careful and as a hostile local user meets it: a real server process
(``python -m bodypix_gimp.worker --serve``) and real clients (the plug-in's stdlib client,
raw sockets), on a Unix socket in a private folder.  Every loop is bounded and every test
stops its server by itself."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gimp_plugin" / "bodypix"))
import worker_client  # noqa: E402

FAST = {"quality": "fast", "refine": False, "fingers": False, "threshold": 0.7, "internal_resolution": "medium"}


def wait_for(condition, seconds: float = 30.0, step: float = 0.05):
    """Poll ``condition()`` until it is truthy (returned) or ``seconds`` pass (None)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # our child that has exited is a zombie until reaped
        return os.waitpid(pid, os.WNOHANG)[0] != pid
    except ChildProcessError:
        return True


@pytest.fixture
def home(monkeypatch):
    """A short private temporary root (Unix socket paths are limited to ~100 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="bpx", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    pids: list[int] = []
    yield root, pids
    for folder in [worker_client.state_dir(), *root.glob("app/*/bodypix-gimp")]:
        for f in Path(folder).glob("*.json"):
            st = worker_client.read_state(str(f)) or {}
            if isinstance(st.get("pid"), int):
                pids.append(st["pid"])
    for pid in set(pids):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: not alive(pid), 10)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def config(models_dir):
    return {"python": sys.executable, "models": str(models_dir), "launcher": [], "server_idle_seconds": 120}


@pytest.fixture(scope="module")
def photo(eval_dir: Path) -> np.ndarray:
    from bodypix_gimp import load_image

    return load_image(eval_dir / "human_seg_300" / "images" / "163.jpg")


def call(config, photo, strips=None, **request):
    """One Select Person call; ``strips``: send the pixels in strips of that many rows, as the
    plug-in reads a layer out of GIMP (default: one buffer)."""
    h, w = photo.shape[:2]
    req = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "options": FAST, **request}
    with worker_client.Worker(config, req) as wk:
        wk.start()
        data = photo.tobytes() if strips is None else (photo[y : y + strips].tobytes() for y in range(0, h, strips))
        result = wk.finish(data)
        item = result["items"][0]
        x, y, iw, ih = item["rect"]  # the mask's box on the canvas
        mask = np.zeros((h, w), np.uint8)
        mask[y : y + ih, x : x + iw] = np.frombuffer(wk.read_item(item), np.uint8).reshape(ih, iw)
    return result, mask


def server_state(config):
    return worker_client.read_state(worker_client.state_path(config))


def started_server(config, photo, pids):
    result, _ = call(config, photo)
    assert result["mode"] == "server"
    state = server_state(config)
    pids.append(state["pid"])
    return state


def test_early_error_reaches_gimp_at_once_whatever_the_layer_size(home, config, photo, models_dir) -> None:
    """A missing model is refused before any pixel moves: a 24 MP layer gets its error in a
    blink, not when the server's idle timeout ends (today's client blocked writing pixels)."""
    root, pids = home
    started_server(config, photo, pids)
    (root / "nomodels").mkdir()
    w, h = 6000, 4000
    req = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "models": str(root / "nomodels")}
    outcome: dict = {}

    def go() -> None:
        t = time.perf_counter()
        try:
            with worker_client.Worker(config, req) as wk:
                wk.start()
                wk.finish(bytes(w * h * 3))
        except worker_client.BodyPixError as e:
            outcome["error"], outcome["kind"] = str(e), e.kind
        outcome["seconds"] = time.perf_counter() - t

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(30)
    assert "seconds" in outcome, "the client still blocks after 30 s"
    print(f"time to the error with a 24 MP layer: {outcome['seconds']:.3f} s")
    assert outcome["kind"] == "model" and "is not installed" in outcome["error"]
    assert outcome["seconds"] < 2.0


def impostor(path_or_port, received: list[bytes], stop: threading.Event) -> threading.Thread:
    """A listener that says 'ready' to anything and records every byte it gets."""
    if isinstance(path_or_port, str):
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path_or_port)
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(("127.0.0.1", path_or_port))
    lsock.listen(4)
    lsock.settimeout(0.2)

    def run() -> None:
        with lsock:
            while not stop.is_set():
                try:
                    conn, _ = lsock.accept()
                except TimeoutError:
                    continue
                conn.settimeout(1)
                with conn:
                    try:
                        first = conn.recv(65536)
                        received.append(first)
                        conn.sendall(b'{"nonce": "00112233445566778899aabbccddeeff", "proof": "00", "ready": true}\n')
                        while chunk := conn.recv(65536):
                            received.append(chunk)
                    except OSError:
                        pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_an_impostor_gets_neither_the_secret_nor_pixels(home, config, photo, transport) -> None:
    """The server died (SIGKILL, OOM) and something else listens where its state file points:
    the client notices before sending the secret, a request or a pixel, and starts a real one."""
    root, pids = home
    folder = Path(os.path.dirname(worker_client.state_path(config)))
    folder.mkdir(mode=0o700)
    token = "5ec7e7" * 10 + "abcd"
    received: list[bytes] = []
    stop = threading.Event()
    if transport == "tcp":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        address = {"port": port}
        thread = impostor(port, received, stop)
    else:
        address = {"socket": str(folder / "impostor.sock"), "port": 1}
        thread = impostor(address["socket"], received, stop)
    state = {**address, "token": token, "pid": os.getpid(), "protocol": 1, "python": sys.executable}
    Path(worker_client.state_path(config)).write_text(json.dumps(state))
    try:
        result, mask = call(config, photo)
    finally:
        stop.set()
        thread.join(5)
    assert received, "the client never tried the address in the state file"
    got = b"".join(received)
    assert token.encode() not in got and b"select-person" not in got and photo[:8, :8].tobytes() not in got
    assert result["mode"] == "server" and server_state(config)["pid"] != os.getpid()
    pids.append(server_state(config)["pid"])
    assert (mask >= 128).any()


def test_sigterm_and_sigkill_leave_no_stale_server_state(home, config, photo) -> None:
    root, pids = home
    state = started_server(config, photo, pids)
    os.kill(state["pid"], signal.SIGTERM)
    assert wait_for(lambda: not alive(state["pid"]), 10)
    assert not Path(worker_client.state_path(config)).exists(), "SIGTERM left the state file"
    assert not list(Path(os.path.dirname(worker_client.state_path(config))).glob("*.sock")), "SIGTERM left the socket"
    state = started_server(config, photo, pids)
    os.kill(state["pid"], signal.SIGKILL)
    assert wait_for(lambda: not alive(state["pid"]), 10)
    assert server_state(config)["pid"] == state["pid"]  # a kill leaves it; the next call replaces it
    fresh = started_server(config, photo, pids)
    assert fresh["pid"] != state["pid"] and alive(fresh["pid"])


def raw_connect(state) -> socket.socket:
    if state.get("socket"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(state["socket"])
    else:
        s = socket.create_connection(("127.0.0.1", state["port"]))
    s.settimeout(10)
    return s


def test_idle_and_endless_connections_do_not_block_the_next_client(home, config, photo) -> None:
    """Before the handshake anyone local can connect: a silent connection, a line that never
    ends (20 MB, no newline) and garbage first lines must neither block nor kill the server."""
    root, pids = home
    state = started_server(config, photo, pids)
    idle = raw_connect(state)
    endless = raw_connect(state)
    flood_sent = [0]

    def flood() -> None:
        try:
            for _ in range(20):
                endless.sendall(b"x" * (1 << 20))
                flood_sent[0] += 1 << 20
        except OSError:
            pass  # the server cut it off

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    for garbage in (
        b"[]\n",
        b"null\n",
        b'{"nonce": []}\n',
        b"\xff\xfe\n",
        b'{"hello": 2, "nonce": "' + b"a" * 32 + b'"}\n',
    ):
        with raw_connect(state) as g:
            g.sendall(garbage)
            with contextlib.suppress(OSError):
                g.recv(4096)  # the server closes it (at the latest after the handshake deadline)
    t0 = time.perf_counter()
    result, mask = call(config, photo)
    seconds = time.perf_counter() - t0
    assert result["mode"] == "server" and server_state(config)["pid"] == state["pid"] and (mask >= 128).any()
    assert seconds < 20, f"the next client waited {seconds:.1f} s"
    t.join(30)
    assert flood_sent[0] < 20 << 20, "the server kept reading a first line without end"
    idle.settimeout(10)
    assert idle.recv(1) == b"", "the silent connection was not closed after the handshake deadline"
    idle.close()
    endless.close()
    assert alive(state["pid"])


BAD_HEADERS = [
    (b"[]", "config"),
    (b"null", "config"),
    (b'"select-person"', "config"),
    (b"{not json", "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 4]}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, "x", 4]}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 1e400, 4]}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 4, 4], "options": {"threshold": "abc"}}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 4, 4], "options": []}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 4, 4], "options": {"quality": []}}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 4, 4], "parts": "face"}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 4, 4], "channels": "many"}', "config"),
    (b'{"op": ["select-person"], "source_rect": [0, 0, 4, 4]}', "config"),
    (b'{"op": "select-person", "source_rect": [0, 0, 20000, 10000]}', "input"),
]


@pytest.mark.parametrize(("line", "kind"), BAD_HEADERS)
def test_malformed_requests_are_one_line_errors_of_the_right_kind(tmp_path, line, kind, models_dir) -> None:
    """One-shot worker: never an "internal" error (a traceback) for what the plug-in sent."""
    p = subprocess.run([sys.executable, "-m", "bodypix_gimp.worker"], input=line + b"\n", capture_output=True,
                       timeout=60, env={**os.environ, "BODYPIX_MODELS": str(models_dir)})  # fmt: skip
    last = json.loads(p.stdout.decode().splitlines()[-1])
    assert p.returncode == 2 and last["kind"] == kind and "\n" not in last["error"], (last, p.stderr[-500:])
    assert b"Traceback" not in p.stderr


def test_a_layer_above_the_pixel_limit_is_refused_before_pixels_move(home, config, photo) -> None:
    """The CLI's limit (imageio.MAX_PIXELS) holds for layers too, with a clear message, in a blink."""
    from bodypix_gimp.imageio import MAX_PIXELS

    root, pids = home
    started_server(config, photo, pids)
    w, h = 20000, MAX_PIXELS // 20000 + 1
    req = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3}
    t = time.perf_counter()
    with worker_client.Worker(config, req) as wk, pytest.raises(worker_client.BodyPixError) as e:
        wk.start()
        wk.finish(b"")  # nothing is sent before "go"
    assert e.value.kind == "input" and f"{MAX_PIXELS // 1_000_000} MP limit" in str(e.value)
    assert time.perf_counter() - t < 2.0


def test_two_calls_starting_at_once_leave_one_server(home, config, photo) -> None:
    """Two GIMP calls (two processes) find no server at the same moment: one server starts."""
    root, pids = home
    script = root / "one_call.py"
    script.write_text(
        "import json, sys, tempfile\n"
        f"sys.path.insert(0, {str(Path(worker_client.__file__).parent)!r})\n"
        f"tempfile.tempdir = {str(root)!r}\n"
        "import worker_client\n"
        f"config = json.loads({json.dumps(json.dumps(config))})\n"
        "conn = worker_client.connect_server(config)\n"
        "print(json.dumps(worker_client.read_state(worker_client.state_path(config)) if conn else None))\n"
    )
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(outs)
    pids.extend(o["pid"] for o in outs)
    assert len({o["pid"] for o in outs}) == 1, f"servers started: {sorted({o['pid'] for o in outs})}"
    running = subprocess.run(["pgrep", "-f", f"bodypix_gimp.worker --serve {worker_client.state_path(config)}"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    assert len(running) == 1, running


def test_pixels_sent_in_strips_are_the_same_pixels(home, config, photo, monkeypatch) -> None:
    """The plug-in sends a layer strip by strip and the server hashes each chunk as it comes:
    the same mask as one buffer, and the same cache key (the second call is a hit); a one-shot
    worker takes strips too."""
    root, pids = home
    first, mask = call(config, photo)
    pids.append(server_state(config)["pid"])
    again, mask2 = call(config, photo, strips=7)  # 7 rows: chunks that end mid-pixel-row nowhere near 64 KiB
    assert first["mode"] == again["mode"] == "server"
    assert (first["cache"], again["cache"]) == ("miss", "hit") and np.array_equal(mask, mask2)
    changed = photo.copy()
    changed[-1, -1, 2] ^= 1  # the last byte of the last strip
    assert call(config, changed, strips=7)[0]["cache"] == "miss"
    monkeypatch.setenv(worker_client.ENV_ONESHOT, "1")
    result, mask3 = call(config, photo, strips=64)
    assert result["mode"] == "one-shot" and np.array_equal(mask, mask3)


def test_a_symlinked_state_folder_is_not_trusted(home, config, photo) -> None:
    """Another user could plant the state folder as a link to a folder they read: refuse it."""
    root, pids = home
    target = root / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(target, os.path.dirname(worker_client.state_path(config)))
    result, mask = call(config, photo)
    assert result["mode"] == "one-shot" and (mask >= 128).any()
    assert not any(target.iterdir()), list(target.iterdir())
    serve = subprocess.run([sys.executable, "-m", "bodypix_gimp.worker", "--serve",
                            os.path.join(os.path.dirname(worker_client.state_path(config)), "x.json")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert serve.returncode == 2 and "not a private folder" in serve.stderr and not any(target.iterdir())


def test_a_cancelled_call_leaves_no_folder_behind(home, config, photo) -> None:
    """GIMP kills the plug-in when the user cancels: its call folder goes with the next call."""
    root, pids = home
    started_server(config, photo, pids)
    script = root / "cancelled.py"
    h, w = photo.shape[:2]
    script.write_text(
        "import json, sys, tempfile, time\n"
        f"sys.path.insert(0, {str(Path(worker_client.__file__).parent)!r})\n"
        f"tempfile.tempdir = {str(root)!r}\n"
        "import worker_client\n"
        f"config = json.loads({json.dumps(json.dumps(config))})\n"
        f"request = {{'op': 'select-person', 'source_rect': [0, 0, {w}, {h}], 'channels': 3}}\n"
        "wk = worker_client.Worker(config, request)\n"
        "wk.start()\n"
        "print(wk.tmp, flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    folder = Path(p.stdout.readline().strip())
    assert folder.is_dir()
    p.kill()  # what GIMP does on cancel: no clean-up runs
    p.wait(10)
    call(config, photo)
    assert not folder.exists()
    state = Path(os.path.dirname(worker_client.state_path(config)))
    leftovers = [f for f in root.glob("bodypix-gimp-*") if f != state]  # mkdtemp's folders of old
    assert not leftovers and not any(Path(os.path.dirname(worker_client.state_path(config)), "calls").iterdir())


def test_flatpak_uses_a_folder_both_sides_see(home, config, photo, monkeypatch) -> None:
    """Flatpak GIMP starts the server on the host through a launcher (flatpak-spawn --host;
    here ``env``, which runs it the same way): state, socket and results live under
    $XDG_RUNTIME_DIR/app/$FLATPAK_ID, the folder the sandbox shares with the host."""
    root, pids = home
    runtime = root / "run"
    (runtime / "app" / "org.gimp.GIMP").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")
    config = {**config, "launcher": ["env"]}
    result, mask = call(config, photo)
    folder = runtime / "app" / "org.gimp.GIMP" / "bodypix-gimp"
    assert result["mode"] == "server" and Path(worker_client.state_path(config)).parent == folder
    state = server_state(config)
    pids.append(state["pid"])
    assert Path(state["socket"]).parent == folder
    monkeypatch.delenv("XDG_RUNTIME_DIR")  # a sandbox that does not say: one-shot, still works
    result, mask2 = call(config, photo)
    assert result["mode"] == "one-shot" and np.array_equal(mask, mask2)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_idle_server_gives_back_the_memory_of_a_24_mp_call(home, config, photo) -> None:
    """After a 24 MP call with the plug-in's defaults the idle server is back near its idle
    size once it forgets its cached results (here after 1 s; 60 s by default); it kept
    ~590-770 MB for its whole idle time before."""
    import cv2

    root, pids = home
    config = {**config, "server_forget_seconds": 1}
    defaults = {**FAST, "refine": True, "fingers": True}
    call(config, photo, options=defaults)  # every model of the defaults loaded: the idle size
    state = server_state(config)
    pids.append(state["pid"])
    idle = rss_mb(state["pid"])
    big = cv2.resize(photo, (6000, 4000), interpolation=cv2.INTER_CUBIC)
    result, mask = call(config, big, options=defaults)
    assert result["mode"] == "server" and mask.shape == (4000, 6000) and (mask >= 128).any()
    after = wait_for(lambda: (m := rss_mb(state["pid"])) <= idle + 40 and m, 10)
    print(f"idle server RSS {idle:.0f} MB, after a 24 MP call {rss_mb(state['pid']):.0f} MB")
    assert after, f"idle {idle:.0f} MB, after a 24 MP call {rss_mb(state['pid']):.0f} MB"


def test_a_select_click_is_answered_before_people_are_told_apart(home, config, photo, monkeypatch) -> None:
    """Select Person and the body-part entries with no selection need only the person mask
    and the part map: the worker answers as soon as those are final (before the stage that
    tells people apart), with the very bytes the whole pipeline gives, and the server then
    finishes the segmentation for its cache, so the next click inside the new selection (which
    needs the people) is a hit.  A one-shot worker answers early too."""
    from bodypix_gimp import RuntimeOptions, segment
    from bodypix_gimp.result import PART_GROUPS, part_ids
    from bodypix_gimp.worker.operations import build_settings

    root, pids = home
    defaults = {**FAST, "refine": True, "fingers": True}  # the plug-in's defaults: every stage runs
    full = segment(photo, build_settings(defaults).replace(multi_person=True), RuntimeOptions(models=config["models"]))
    assert full.persons and "persons" in full.timings
    result, mask = call(config, photo, options=defaults)
    pids.append(server_state(config)["pid"])
    assert result["mode"] == "server" and result["cache"] == "miss" and result.get("early") is True
    assert "persons" not in result["timings_ms"]  # answered before that stage ran
    assert np.array_equal(mask, full.person_mask)
    # the next click, Face inside a box around the first person: needs the people, from the cache
    x0, y0, x1, y1 = full.persons[0].bbox
    h, w = photo.shape[:2]
    box = np.zeros((h, w), np.uint8)
    box[y0:y1, x0:x1] = 255
    req = {"op": "select-parts", "parts": ["face"], "source_rect": [0, 0, w, h], "channels": 3,
           "options": defaults, "selection": True}  # fmt: skip
    with worker_client.Worker(config, req) as wk:
        wk.start()
        face = wk.finish(photo.tobytes(), box.tobytes())
        fx, fy, fw, fh = face["items"][0]["rect"]
        got = np.zeros((h, w), np.uint8)
        got[fy : fy + fh, fx : fx + fw] = np.frombuffer(wk.read_item(face["items"][0]), np.uint8).reshape(fh, fw)
    assert face["cache"] == "hit" and not face.get("early")
    faces = np.isin(full.part_map, part_ids(list(PART_GROUPS["face"])))
    assert (got >= 128).any() and not ((got >= 128) & ~faces).any()
    monkeypatch.setenv(worker_client.ENV_ONESHOT, "1")
    result, mask2 = call(config, photo, options=defaults)
    assert result["mode"] == "one-shot" and result.get("early") is True and np.array_equal(mask2, full.person_mask)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the server's CPU time from /proc")
def test_after_an_early_answer_the_server_waits_for_the_client_to_close(home, config, photo) -> None:
    """After answering a Select click early, the server finishes the people for its cache only
    once the plug-in has closed the connection (it has written the selection into GIMP by then),
    so the two do not share the CPU: while the connection stays open the server uses no CPU
    (a window of 0.3 WRITE_BACK_SECONDS; telling people apart costs it 50-250 ms of CPU on this
    photo), and after the close the people are there for the next click (a hit)."""
    from bodypix_gimp.worker.server import WRITE_BACK_SECONDS

    root, pids = home
    defaults = {**FAST, "refine": True, "fingers": True}
    pid = started_server(config, photo, pids)["pid"]
    h, w = photo.shape[:2]
    changed = photo.copy()
    changed[0, 0, 0] ^= 1  # pixels the server has not seen: a miss, answered early
    req = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "options": defaults}
    with worker_client.Worker(config, req) as first:
        first.start()
        result = first.finish(changed.tobytes())
        assert result.get("early") is True and result["cache"] == "miss"
        before = cpu_seconds(pid)
        busy = wait_for(lambda: cpu_seconds(pid) - before >= 0.04, WRITE_BACK_SECONDS * 0.3, 0.02)
        assert busy is None, "the server went on computing while the client was still writing back"
    box = np.zeros((h, w), np.uint8)
    box[: h // 2, : w // 2] = 255  # the next click needs the people (a selection)
    face_req = {"op": "select-parts", "parts": ["face"], "source_rect": [0, 0, w, h], "channels": 3,
                "options": defaults, "selection": True}  # fmt: skip
    with worker_client.Worker(config, face_req) as second:
        second.start()
        face = second.finish(changed.tobytes(), box.tobytes())
    assert face["cache"] == "hit", face


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the server's CPU time from /proc")
def test_a_client_that_keeps_its_connection_open_holds_the_server_for_a_bounded_time(home, config, photo) -> None:
    """A client that never closes after an early answer holds the server's cache work for at
    most WRITE_BACK_SECONDS: the server then tells the people apart (its CPU time grows) while
    that connection is still open, and a next call, coming while it is still open, is a hit."""
    from bodypix_gimp.worker.server import WRITE_BACK_SECONDS

    root, pids = home
    defaults = {**FAST, "refine": True, "fingers": True}
    pid = started_server(config, photo, pids)["pid"]
    h, w = photo.shape[:2]
    changed = photo.copy()
    changed[0, 1, 1] ^= 1
    req = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "options": defaults}
    with worker_client.Worker(config, req) as first:
        first.start()
        assert first.finish(changed.tobytes()).get("early") is True
        before = cpu_seconds(pid)
        assert wait_for(lambda: cpu_seconds(pid) - before >= 0.04, WRITE_BACK_SECONDS + 30, 0.02)
        with worker_client.Worker(config, dict(req, op="select-parts", parts=["face"])) as second:
            second.start()
            face = second.finish(changed.tobytes())
        assert first.conn.sock.fileno() >= 0  # the first connection is still open
    assert face["cache"] == "hit"


def test_a_server_killed_while_pixels_travel_is_a_clear_error(home, config, photo) -> None:
    """The pixels leave from a thread of their own (``worker_client.Sender``) while the plug-in
    reads the next strip: a server that dies in the middle is a one-line error, at once."""
    root, pids = home
    state = started_server(config, photo, pids)
    h, w = photo.shape[:2]
    big = np.zeros((2000, 3000, 3), np.uint8)  # far more than the socket holds
    req = {"op": "select-person", "source_rect": [0, 0, 3000, 2000], "channels": 3, "options": FAST}

    def strips():
        for y in range(0, 2000, 64):
            yield big[y : y + 64].tobytes()
            if y == 64:  # the first strips are on their way: the server dies
                os.kill(state["pid"], signal.SIGKILL)
                assert wait_for(lambda: not alive(state["pid"]), 10)

    t = time.monotonic()
    with pytest.raises(worker_client.BodyPixError, match="stopped answering"):
        with worker_client.Worker(config, req) as wk:
            wk.start()
            wk.finish(strips())
    assert time.monotonic() - t < 15
