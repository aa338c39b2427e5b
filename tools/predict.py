"""``python tools/predict.py ...`` is ``detector predict ...`` (``detector/commands/predict.py``)."""

import sys

from detector.commands.predict import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/predict.py"))
