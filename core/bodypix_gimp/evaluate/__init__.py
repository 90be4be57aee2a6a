"""Evaluation harness: run pipeline configurations over datasets and score their masks.

``metrics`` (pure scoring functions), ``datasets`` (reading the eval folders), ``configs``
(what is compared), ``harness`` (running configurations), ``report`` (terminal table, JSON,
markdown, overlays), ``hands`` (hand-box metrics), ``persons`` (group photos), ``timing``,
``bench`` and ``bench_convert`` (speed and memory).
``bodypix-gimp eval`` (``cli.eval``) ties them together.
"""
