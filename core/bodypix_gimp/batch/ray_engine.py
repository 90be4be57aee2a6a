"""The Ray engine: the same per-photo work as the local engine, spread over a Ray cluster.

Ray Data does the scheduling: the photo paths are the dataset (``from_items``: the read
happens in the workers, so every node must see the inputs at the same path, e.g. a shared
volume), ``map_batches`` runs ``Segmenter`` on a pool of actors that load the models once
each and return every output file already encoded, and the driver streams the results
(``iter_rows``, with Ray Data's backpressure) into the same ``Writer`` as the local engine:
the same bytes, the same all-or-nothing commit, the same manifest.  A photo that fails in
a worker comes back as that photo's error line; only a missing or damaged model, which
would fail every photo, stops the batch.

With no ``--address`` a private Ray starts on this machine (``ray.init`` with one CPU per
worker, a small object store, no dashboard, logs in a temporary folder) and is shut down at
the end; with an address the batch joins that cluster and leaves it running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import ConfigError, Settings
from .outputs import OutputOptions, encode_photo
from .writer import Item, RayJobError, Terminated, Writer, describe_error, signals_ignored

INSTALL_HINT = ("--engine ray needs Ray Data, an optional extra: pip install 'bodypix-gimp[ray]' "
                "(or pip install 'ray[data]' in the same environment)")
# The local Ray's shared-memory object store: a handful of encoded photos in flight is all
# the batch needs (12 MP: about 1.5 MB a photo with the JPEG overlay, 10 MB with PNG).
OBJECT_STORE_BYTES = 256 * 1024 * 1024
MAX_BLOCKS = 4096


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


class Segmenter:
    """``map_batches`` callable: one instance per actor, models loaded once, in ``__init__``."""

    def __init__(self, settings: Settings, runtime: Any, options: OutputOptions, cpus: int) -> None:
        import cv2

        from ..pipeline import get_model

        cv2.setNumThreads(cpus)
        self.settings, self.options = settings, options
        if not runtime.threads:
            runtime = dataclasses.replace(runtime, threads=cpus)
        self.runtime = runtime
        self.fatal: str | None = None
        try:
            get_model(settings, runtime)
        except Exception as e:  # noqa: BLE001 - reported with the first photo, stops the batch
            self.fatal = str(e) or type(e).__name__
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def process(self, label: str) -> Item:
        from ..imageio import load_image
        from ..pipeline import segment
        from ..runtime.store import ChecksumError, ModelNotFoundError

        path = Path(label)
        item = Item(path, started=time.time())
        item.timings["worker"] = self.worker
        cpu = time.process_time()  # the actor does one photo at a time: its CPU (all threads) is this photo's
        t = time.perf_counter()
        try:
            photo = load_image(path)
            item.timings["read"] = round((time.perf_counter() - t) * 1000, 1)
            t = time.perf_counter()
            result = segment(photo, self.settings, self.runtime)
            item.timings["segment"] = {k: round(v, 1) for k, v in result.timings.items()}
            item.timings["segment_wall"] = round((time.perf_counter() - t) * 1000, 1)
            t = time.perf_counter()
            item.encoded = encode_photo(photo, result, path.stem, label, self.settings, self.options)
            item.timings["encode"] = round((time.perf_counter() - t) * 1000, 1)
            item.timings["cpu"] = round((time.process_time() - cpu) * 1000, 1)
        except (ModelNotFoundError, ChecksumError) as e:
            self.fatal = str(e)
        except Exception as e:  # noqa: BLE001 - any failure of one photo is that photo's line
            item.error = describe_error(label, e)
        return item

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for label in batch["input"]:
            item = self.process(str(label)) if self.fatal is None else Item(Path(str(label)))
            records.append(pickle.dumps((item, self.fatal), protocol=pickle.HIGHEST_PROTOCOL))
        out = np.empty(len(records), dtype=object)
        out[:] = records
        return {"record": out}


def bound_segmenter(settings: Settings, runtime: Any, options: OutputOptions, cpus: int) -> type:
    """``Segmenter`` with its arguments baked in: Ray pickles the class with the actors' code
    instead of keeping constructor arguments in the object store (which an actor restart needs)."""

    class BoundSegmenter(Segmenter):
        def __init__(self) -> None:
            super().__init__(settings, runtime, options, cpus)

    return BoundSegmenter


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` that does not answer is one line now: ``ray.init`` would retry for minutes."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...": Ray resolves those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({e.strerror or e})") from None


def _start_local(workers: int | None) -> str:
    import ray

    tmp = tempfile.mkdtemp(prefix="bodypix-ray-")
    try:
        ray.init(address="local", num_cpus=max(workers or 0, os.cpu_count() or 1),
                 object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False, _temp_dir=tmp,
                 log_to_driver=False, logging_level=logging.ERROR)
    except BaseException as e:  # a start cut short (timeout on a loaded machine, Ctrl+C) leaves no process
        with signals_ignored():
            with contextlib.suppress(Exception):
                ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception):
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RayJobError(f"a local Ray could not start: {first}") from None
        raise
    return tmp


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own bar and lines say how it goes
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False


def run_ray(photos: list[Path], settings: Settings, runtime: Any, options: OutputOptions, writer: Writer,
            address: str | None = None, workers: int | None = None) -> None:
    import ray
    import ray.data

    tmp = None
    started = not ray.is_initialized()
    if started:
        if address:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: one line
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ConfigError(f"--address {address}: cannot join the Ray cluster ({first})") from None
        else:
            tmp = _start_local(workers)
    try:
        _quiet_ray_data()
        cpus_total = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = workers or cpus_total
        cpus = max(1, cpus_total // workers)
        if runtime.models:  # the same models folder on every node (documented in docs/scale.md)
            runtime = dataclasses.replace(runtime, models=str(Path(runtime.models).resolve()))
        # A private Ray has room for every worker; a cluster may have less free, or grow on demand
        # (autoscaler, KubeRay): there the pool starts with one actor and grows up to --workers.
        pool = ray.data.ActorPoolStrategy(size=workers) if tmp else ray.data.ActorPoolStrategy(
            min_size=1, max_size=workers)
        ds = ray.data.from_items([{"input": str(p)} for p in photos],
                                 override_num_blocks=min(len(photos), MAX_BLOCKS))
        ds = ds.map_batches(bound_segmenter(settings, runtime, options, cpus), batch_size=1,
                            batch_format="numpy", num_cpus=cpus, compute=pool)
        try:
            for row in ds.iter_rows():
                item, fatal = pickle.loads(row["record"])
                if fatal is not None:
                    from ..runtime.store import ModelNotFoundError

                    raise ModelNotFoundError(fatal)
                writer.put(item)
        except (KeyboardInterrupt, Terminated):
            writer.abort.set()  # before the slow Ray shutdown below
            raise
        except ray.exceptions.RayError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RayJobError(f"the Ray job failed: {first}") from None
    finally:
        with signals_ignored():  # a second Ctrl+C must not leave the private Ray running
            if started:
                ray.shutdown()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
