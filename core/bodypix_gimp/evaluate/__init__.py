"""Evaluation harness: run pipeline configurations over datasets and score their masks.

``metrics`` (pure scoring functions), ``datasets`` (reading the eval folders), ``harness``
(running configurations), ``report`` (terminal table, JSON, markdown, overlays).
``bodypix-gimp eval`` (``cli.eval``) ties them together.
"""
