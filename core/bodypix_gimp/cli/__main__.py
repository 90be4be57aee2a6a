"""``python -m bodypix_gimp.cli``: same as the ``bodypix-gimp`` command."""

import sys

from .main import main

sys.exit(main())
