"""Settings validation speaks body-pix's language and names the allowed values."""

import pytest
from bodypix_gimp.errors import ConfigError
from bodypix_gimp.settings import Settings, default_settings, model_name, parse_model_name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": "VGG"}, "Should be one of MobileNetV1,ResNet50"),
        ({"output_stride": 4}, "Should be one of 8,16,32 for architecture MobileNetV1"),
        ({"architecture": "ResNet50", "multiplier": 1.0, "output_stride": 8}, "Should be one of 32,16"),
        ({"multiplier": 0.6}, "Should be one of 0.5,0.75,1.0"),
        ({"quant_bytes": 3}, "Should be one of 1,2,4"),
        ({"internal_resolution": "ultra"}, "must be one of low,medium,high,full"),
        ({"internal_resolution": 2.5}, "between 0.1 and 2.0"),
        ({"segmentation_threshold": 1.5}, "Should be in range [0.0, 1.0]"),
        ({"max_detections": 0}, "Should be > 0"),
        ({"nms_radius": 0}, "Invalid nmsRadius"),
        ({"refine_steps": 30}, "Should be in range [1, 20]"),
        ({"refine_steps": 0}, "Should be in range [1, 20]"),
        ({"max_input_pixels": 9_999}, "Should be >= 10000"),
        ({"min_pose_score": 1.5}, "Invalid min_pose_score 1.5"),
        ({"min_keypoint_score": -0.1}, "Invalid minKeypointScore"),
        ({"score_threshold": 1.1}, "Invalid scoreThreshold"),
        ({"segmentation_threshold": -0.01}, "Should be in range [0.0, 1.0]"),
    ],
)
def test_invalid_settings_name_allowed_values(changes, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        Settings(**changes)


def test_body_pix_defaults():
    s = Settings()
    assert (s.architecture, s.multiplier, s.output_stride) == ("MobileNetV1", 0.75, 16)
    assert (s.internal_resolution, s.segmentation_threshold) == ("medium", 0.7)
    assert (s.max_detections, s.score_threshold, s.nms_radius) == (10, 0.4, 20)


@pytest.mark.parametrize(
    "name", ["mobilenet075-quant2-stride16", "mobilenet050-float-stride8", "resnet50-quant1-stride32"]
)
def test_model_names_round_trip(name):
    spec = parse_model_name(name)
    assert model_name(spec["architecture"], spec["multiplier"], spec["quant_bytes"], spec["output_stride"]) == name


@pytest.mark.parametrize("bad", ["mobilenet", "mobilenet075-q2-stride16", "vgg-float-stride16", "resnet50-float-16"])
def test_unknown_model_names_say_the_pattern(bad):
    with pytest.raises(ConfigError, match="Should look like 'mobilenet075-quant2-stride16'"):
        parse_model_name(bad)


def test_product_defaults_are_valid_settings():
    s = default_settings()
    assert isinstance(s, Settings)
    assert default_settings(refine="none").refine == "none"
