"""``bodypix-gimp``: the command line; ``main`` builds the parser, one module per subcommand."""

from .main import main

__all__ = ["main"]
