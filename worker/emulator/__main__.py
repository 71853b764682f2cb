import sys

from worker.emulator.cli import main

sys.exit(main())
