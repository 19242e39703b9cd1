import sys

from mibounds.cli import main

sys.exit(main())
