"""``python tools/prune.py ...`` is ``detector prune ...`` (``detector/commands/prune.py``)."""

import sys

from detector.commands.prune import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/prune.py"))
