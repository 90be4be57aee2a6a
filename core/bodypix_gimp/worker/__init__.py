"""The process the GIMP plug-in talks to: pixels in over stdin, masks out as raw files.

Why a separate process: GIMP on Windows and macOS bundles its own Python, and Flatpak has
its own runtime, so onnxruntime cannot be imported into the plug-in's Python everywhere.
The plug-in therefore starts ``VENV_PYTHON -m bodypix_gimp.worker`` (the environment the
installer made) and keeps to moving bytes: it needs neither numpy nor onnxruntime.

Modules, top to bottom: ``__main__`` (command line: one request, ``--serve``, ``--stop``),
``server`` (one request over a stream; the persistent loopback server), ``operations`` (the
dialog's options as Settings, one function per plug-in operation), ``protocol`` (header,
pixels, progress and result lines, result files).

Everything that decides a pixel (BodyPix, thresholds, which person overlaps the selection,
part groups, colours) happens here or deeper in the core; nothing in GIMP computes.
"""
