"""``python tools/eval_mot.py ...`` is ``detector eval-mot ...`` (``detector/commands/eval_mot.py``)."""

import sys

from detector.commands.eval_mot import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/eval_mot.py"))
