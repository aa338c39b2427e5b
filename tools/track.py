"""``python tools/track.py ...`` is ``detector track ...`` (``detector/commands/track.py``)."""

import sys

from detector.commands.track import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/track.py"))
