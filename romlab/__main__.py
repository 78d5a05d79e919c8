import sys

from romlab.cli import main

sys.exit(main())
