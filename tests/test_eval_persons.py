"""`bodypix-gimp eval-persons`: instance counts and Hungarian-matched IoU on the shared photos."""

import json

from bodypix_gimp.cli import main


def test_eval_persons_quick_measures_group_photos(tmp_path):
    assert main(["eval-persons", "--quick", "--repeat", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "persons.json").read_text())
    base, tuned = report["runs"][:2]
    # Hand-counted people in the 19 group photos; every one is either found or missed.
    for run in (base, tuned):
        g = run["groups"]
        assert g["people"] == 51 and g["photos"] == 19
        assert g["found"] - g["extra"] + g["missed"] == g["people"]
        # Composed rows of one-person photos: matched instances overlap their true person.
        assert run["composed"]["mean_instance_iou"] > 0.6
    # A lower pose threshold turns more decoded poses into people.
    assert tuned["groups"]["found"] >= base["groups"]["found"]
    assert report["timing"]["multi_ms"] > 0 and (tmp_path / "persons.md").read_text().startswith("# Person")
