"""The pipeline's outputs stay byte-identical on every photo of ../shared/eval (tests/golden.py).

The record (tests/golden/outputs.json) was written from main before the layout moves; a change
fails with the photo, the configuration and which output changed.  Re-record only for a deliberate
output change: `.venv/bin/python tests/golden.py --record` (say why, with evaluation numbers).
"""

from __future__ import annotations

import golden
import pytest


def test_record_covers_every_eval_photo() -> None:
    assert sorted(golden.load_record()) == sorted(golden.photos())


def test_quick_subset_unchanged() -> None:
    """One photo per evaluation set (group photo, hands, soft matte, seed photos), both configurations."""
    assert golden.differences(list(golden.QUICK)) == []


@pytest.mark.slow
def test_every_eval_photo_unchanged() -> None:
    assert golden.differences(golden.photos()) == []


def test_segment_without_settings_is_the_product_pipeline() -> None:
    """``bodypix_gimp.segment(image)`` gives the product's masks (the record's "product" entry)."""
    from bodypix_gimp import load_image, segment

    name = "seed/jim.jpg"
    result = segment(load_image(golden.EVAL / name))
    want = golden.load_record()[name]["product"]
    assert (golden.sha(result.person_mask), golden.sha(result.part_map)) == (want["person_mask"], want["part_map"])
