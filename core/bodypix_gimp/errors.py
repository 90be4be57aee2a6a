"""The errors a user can fix: each message is one line that says what to do.

The CLI prints them as ``bodypix-gimp: error: ...`` (exit 2); the GIMP worker sends them to
the plug-in with a ``kind`` (``config``, ``input``, ``model``).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting outside the values body-pix allows; the message names the allowed ones."""


class InputError(ValueError):
    """The input cannot be used; the message is one line meant for the user."""


class ModelNotFoundError(FileNotFoundError):
    """A model file is missing; the message says where we looked and how to install."""


class ChecksumError(RuntimeError):
    """A file does not match its recorded sha256; nothing was loaded or kept."""
