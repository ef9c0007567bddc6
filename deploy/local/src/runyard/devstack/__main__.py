import sys

from runyard.devstack.cli import main

sys.exit(main())
