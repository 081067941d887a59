import sys

from vitlight.cli import main

sys.exit(main())
