import sys

from runyard.auth.cli import main

sys.exit(main())
