#!/usr/bin/env python3
# bodypix-gimp: one-click person and body-part selection for GIMP 3.
# Copyright (C) 2026 the bodypix-gimp authors. GPL-3.0-or-later.
"""The file GIMP starts for every call of a bodypix-gimp procedure; they live in ``procedures.py``.

Kept this short on purpose: Python compiles the file it runs as a script on every start (10 ms
for the 640 lines of the procedures, on every click), but keeps the modules it imports compiled
in ``__pycache__`` beside them.
"""

import os
import sys
import time

T0 = time.perf_counter()  # the plug-in process's Python is up; used by the timing report
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procedures  # noqa: E402

procedures.main(T0)
