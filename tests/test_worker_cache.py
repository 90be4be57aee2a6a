"""worker/cache.py: the results the model server keeps, so repeated clicks on an unchanged layer
compute once, within a memory bound, and a changed layer never gets a stale answer.

Unit tests of the cache on real results of real photos, then the worker's operations (the hook):
the same pixels answer from the cache with the very files a fresh computation writes, any
changed pixel, size or setting computes again, and the cache stays within its bound.
"""

from __future__ import annotations

import filecmp
import hashlib
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp import segment
from bodypix_gimp.worker import operations
from bodypix_gimp.worker.cache import MAX_BYTES, Hasher, ResultCache, digest, key, result_bytes
from bodypix_gimp.worker.operations import build_settings
from bodypix_gimp.worker.protocol import Request
from conftest import EVAL, human_seg_pairs, load

OPTIONS = {"quality": "fast", "refine": False, "fingers": False}  # the cheapest real pipeline
GROUP = EVAL / "human_seg_300" / "images" / "266.jpg"  # three people


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [load(image) for image, _ in human_seg_pairs(5)]


@pytest.fixture(scope="module")
def results(photos) -> list:
    settings = build_settings(OPTIONS)
    return [segment(p, settings) for p in photos]


def test_key_changes_with_any_pixel_the_size_or_a_setting(photos) -> None:
    p = photos[0]
    s = build_settings(OPTIONS)
    k = key(digest(p), p.shape, s, "/models")
    q = p.copy()
    q[p.shape[0] // 2, p.shape[1] // 2, 1] ^= 1  # one bit of one pixel
    assert key(digest(q), q.shape, s, "/models") != k
    # the same bytes as another size are other pixels
    flat = p.reshape(p.shape[1], p.shape[0], 3)
    assert digest(flat) == digest(p) and key(digest(flat), flat.shape, s, "/models") != k
    assert key(digest(p), p.shape, s.replace(segmentation_threshold=0.6), "/models") != k
    assert key(digest(p), p.shape, s.replace(soft_edges=True), "/models") != k
    assert key(digest(p), p.shape, s, "/other-models") != k
    # telling people apart adds to a result and changes none of its masks: one key for both
    assert key(digest(p), p.shape, s.replace(multi_person=True), "/models") == k
    assert key(digest(p.copy()), p.shape, build_settings(dict(OPTIONS)), "/models") == k


def test_result_bytes_counts_shared_arrays_once() -> None:
    photo = load(GROUP)
    res = segment(photo, build_settings(OPTIONS).replace(multi_person=True))
    assert len(res.persons) >= 2  # every person holds views of the photo-wide arrays
    arrays = (res.person_mask, res.part_map, res.instance_map)
    # BodyPix's float probability map is computed when read: until then it holds nothing
    assert result_bytes(res) == sum(a.nbytes for a in arrays)
    prob = res.person_prob  # read once: from now on the result holds it
    assert result_bytes(res) == sum(a.nbytes for a in arrays) + prob.nbytes


def test_budget_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BODYPIX_WORKER_CACHE_MB", "64")
    assert ResultCache().max_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("BODYPIX_WORKER_CACHE_MB", "0")  # no cache: nothing is kept
    c = ResultCache()
    c.put(("k",), segment(load(GROUP), build_settings(OPTIONS)))
    assert len(c) == 0
    monkeypatch.setenv("BODYPIX_WORKER_CACHE_MB", "lots")  # a typo: the default budget
    assert ResultCache().max_bytes == MAX_BYTES


def test_bounded_by_entries_and_bytes_least_recently_used_first(photos, results) -> None:
    s = build_settings(OPTIONS)
    keys = [key(digest(p), p.shape, s, None) for p in photos]
    sizes = [result_bytes(r) for r in results]
    c = ResultCache(max_bytes=10**12, max_entries=3)
    for k, r in zip(keys, results, strict=True):
        c.put(k, r)
        assert len(c) <= 3
    assert [c.get(k) is not None for k in keys] == [False, False, True, True, True]
    # by bytes: room for the two largest results, not three results
    budget = sum(sorted(sizes)[-2:])
    c = ResultCache(max_bytes=budget, max_entries=10)
    for k, r in zip(keys, results, strict=True):
        c.put(k, r)
        assert c.total_bytes <= budget
    assert len(c) == 2 or (len(c) == 3 and sum(sorted(sizes)[:3]) <= budget)
    assert c.get(keys[-1]) is results[-1]
    # a use makes an entry the most recent: the next put evicts the other one
    c = ResultCache(max_bytes=10**12, max_entries=2)
    c.put(keys[0], results[0])
    c.put(keys[1], results[1])
    assert c.get(keys[0]) is results[0]
    c.put(keys[2], results[2])
    assert c.get(keys[1]) is None and c.get(keys[0]) is results[0]
    # a result larger than the whole budget is not kept (and evicts nothing)
    c = ResultCache(max_bytes=min(sizes) - 1, max_entries=4)
    c.put(keys[0], results[0])
    assert len(c) == 0 and c.total_bytes == 0


def test_the_hash_made_while_the_pixels_arrive_is_the_hash_of_the_pixels(photos) -> None:
    """The server feeds ``Hasher`` the chunks the socket delivers (any sizes); the key must be
    the one of the whole array, or a repeated click would never hit (or worse, hit wrongly)."""
    p = photos[0]
    data = memoryview(np.ascontiguousarray(p)).cast("B")
    rng = np.random.default_rng(0)
    h, at = Hasher(), 0
    while at < len(data):
        n = int(rng.integers(1, 300_000))
        h.update(data[at : at + n])
        at += n
    assert h.digest() == digest(p) == hashlib.sha256(p.tobytes()).digest()
    q = p.copy()
    q.reshape(-1)[-1] ^= 1  # the very last byte
    h2 = Hasher()
    h2.update(memoryview(q).cast("B"))
    assert h2.digest() != h.digest()


def test_a_request_for_people_needs_a_result_with_people(photos, results) -> None:
    s = build_settings(OPTIONS)
    k = key(digest(photos[0]), photos[0].shape, s, None)
    c = ResultCache()
    c.put(k, results[0])  # computed without telling people apart
    assert c.get(k) is results[0] and c.get(k, need_persons=True) is None


# ------------------------------------------------------------------ the worker's operations ---
def request(tmp: Path, name: str, photo: np.ndarray, op: str = "select-person", **extra) -> Request:
    h, w = photo.shape[:2]
    return Request(op=op, width=w, height=h, source_rect=(0, 0, w, h), target_rect=(0, 0, w, h),
                   options=dict(OPTIONS), outdir=str(tmp / name), channels=photo.shape[2], **extra)  # fmt: skip


def run(req: Request, photo: np.ndarray, selection: np.ndarray | None = None) -> dict:
    return operations.run(req, photo, selection, lambda f, m: None)


def files(tmp: Path, name: str) -> list[Path]:
    return sorted((tmp / name).glob("*.raw"))


def test_worker_answers_repeated_clicks_from_the_cache(tmp_path, monkeypatch, photos) -> None:
    monkeypatch.setattr(operations, "CACHE", ResultCache())
    photo = photos[1]
    first = run(request(tmp_path, "person", photo), photo)
    assert first["cache"] == "miss"
    hands = run(request(tmp_path, "hands", photo, op="select-parts", parts=["hands"]), photo)
    face = run(request(tmp_path, "face", photo, op="select-parts", parts=["face"]), photo)
    assert hands["cache"] == face["cache"] == "hit"
    # what a worker without a cache writes for the same request
    monkeypatch.setattr(operations, "CACHE", ResultCache(max_entries=0))
    fresh = run(request(tmp_path, "face-fresh", photo, op="select-parts", parts=["face"]), photo)
    assert fresh["cache"] == "miss"
    assert [f.name for f in files(tmp_path, "face")] == [f.name for f in files(tmp_path, "face-fresh")]
    assert all(
        filecmp.cmp(a, b, shallow=False)
        for a, b in zip(files(tmp_path, "face"), files(tmp_path, "face-fresh"), strict=True)
    )
    assert face["items"] == fresh["items"]


def test_worker_never_answers_a_changed_layer_from_the_cache(tmp_path, monkeypatch, photos) -> None:
    monkeypatch.setattr(operations, "CACHE", ResultCache())
    photo = photos[2]
    assert run(request(tmp_path, "a", photo), photo)["cache"] == "miss"
    changed = photo.copy()
    changed[10, 10] = 255 - changed[10, 10]
    assert run(request(tmp_path, "b", changed), changed)["cache"] == "miss"
    # a block painted white: the fresh answer is the core's on the new pixels
    painted = photo.copy()
    painted[photo.shape[0] // 2 :] = 255
    r = run(request(tmp_path, "c", painted), painted)
    assert r["cache"] == "miss"
    (item,) = r["items"]
    x, y, w, h = item["rect"]
    got = np.zeros(photo.shape[:2], np.uint8)
    got[y : y + h, x : x + w] = np.fromfile(tmp_path / "c" / item["file"], np.uint8).reshape(h, w)
    assert np.array_equal(got, segment(painted, build_settings(OPTIONS)).person_mask)
    # one bit of one byte, given as the server gives it (hashed while it arrived)
    unseen = photo.copy()
    unseen.reshape(-1)[1] ^= 1
    h = Hasher()
    h.update(memoryview(unseen).cast("B"))
    assert operations.run(request(tmp_path, "u", unseen), unseen, None, lambda f, m: None, None, h.digest())[
        "cache"
    ] == "miss"
    # another setting computes again
    other = request(tmp_path, "d", photo)
    other.options["threshold"] = 0.5
    assert run(other, photo)["cache"] == "miss"


def test_a_click_inside_the_selection_after_a_plain_click_is_answered_too(tmp_path, monkeypatch, photos) -> None:
    """Select Person, then Face with that selection (people told apart): one segmentation, and
    the face of the people the selection touches, as a worker without a cache selects them."""
    monkeypatch.setattr(operations, "CACHE", ResultCache())
    photo = photos[3]
    assert run(request(tmp_path, "person", photo), photo)["cache"] == "miss"
    box = np.zeros(photo.shape[:2], np.uint8)
    box[: photo.shape[0] // 2] = 255
    face = request(tmp_path, "face", photo, op="select-parts", parts=["face"], selection=True)
    assert run(face, photo, box)["cache"] == "hit"
    monkeypatch.setattr(operations, "CACHE", ResultCache(max_entries=0))
    fresh = request(tmp_path, "fresh", photo, op="select-parts", parts=["face"], selection=True)
    assert run(fresh, photo, box)["cache"] == "miss"
    (a,), (b,) = files(tmp_path, "face"), files(tmp_path, "fresh")
    assert filecmp.cmp(a, b, shallow=False)


def test_worker_cache_stays_within_its_bound(tmp_path, monkeypatch, photos, results) -> None:
    budget = sum(sorted(result_bytes(r) for r in results)[-2:])
    cache = ResultCache(max_bytes=budget, max_entries=3)
    monkeypatch.setattr(operations, "CACHE", cache)
    for i, photo in enumerate(photos):
        assert run(request(tmp_path, f"p{i}", photo), photo)["cache"] == "miss"
        assert len(cache) <= 3 and cache.total_bytes <= budget
    # the last photo is still there, the first is gone
    assert run(request(tmp_path, "last", photos[-1]), photos[-1])["cache"] == "hit"
    assert run(request(tmp_path, "first", photos[0]), photos[0])["cache"] == "miss"
