import sys

from mcit.cli import main

sys.exit(main())
