"""``python tools/train.py ...`` is ``detector train ...`` (``detector/commands/train.py``)."""

import sys

from detector.commands.train import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/train.py"))
