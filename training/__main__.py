"""`python -m training ...` is `asl-train ...`; torchrun runs it as `-m training`."""

import sys

from training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
