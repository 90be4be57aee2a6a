"""Settings validation speaks body-pix's language and names the allowed values."""

import argparse

import pytest
from bodypix_gimp.bodypix.model import plan_geometry
from bodypix_gimp.cli.segment import add_settings_arguments, settings_from_args
from bodypix_gimp.errors import ConfigError
from bodypix_gimp.settings import Settings, default_settings, model_name, parse_model_name
from bodypix_gimp.worker.operations import build_settings
from bodypix_gimp.worker.protocol import WorkerError


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


def test_cli_flags_and_gimp_dialog_options_make_the_same_settings():
    """Both front-ends go through settings.settings_from_options, each with its own option names."""
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    flags = ["--stride", "8", "--threshold", "0.5", "--internal-resolution", "0.6", "--no-refine", "--no-fingers",
             "--soft"]
    dialog = {"quality": "accurate", "threshold": 0.5, "internal_resolution": "0.6", "refine": False,
              "fingers": False, "soft_edges": True}
    want = Settings.product(output_stride=8, segmentation_threshold=0.5, internal_resolution=0.6, refine="none",
                            fingers=False, soft_edges=True)
    assert settings_from_args(parser.parse_args(flags)) == build_settings(dialog) == want
    assert settings_from_args(parser.parse_args([])) == build_settings({}) == Settings.product()
    # refine on: the product's method; a method by name from the CLI
    assert build_settings({"refine": True}).refine == Settings.product().refine != "none"
    assert settings_from_args(parser.parse_args(["--refine", "guided"])).refine == "guided"
    assert settings_from_args(parser.parse_args(["--model", "mobilenet050-float-stride8"])).model_name == \
        "mobilenet050-float-stride8"
    # an input cap asked for is the only limit (a 4 MP input for a 12 MP photo at "full"), not the 1 MP copy
    capped = settings_from_args(parser.parse_args(["--max-input-pixels", "4000000", "--internal-resolution", "full"]))
    assert Settings.product().max_work_pixels == 1_000_000 and capped.max_work_pixels is None
    g = plan_geometry(3000, 4000, capped)
    assert 3.9e6 < g.input_height * g.input_width <= 4e6
    # a bad value: body-pix's words, a ConfigError in the CLI, a "config" error for the plug-in
    with pytest.raises(ConfigError, match="must be one of low,medium,high,full"):
        settings_from_args(parser.parse_args(["--internal-resolution", "ultra"]))
    with pytest.raises(WorkerError, match="must be one of low,medium,high,full") as e:
        build_settings({"internal_resolution": "ultra"})
    assert e.value.kind == "config"
