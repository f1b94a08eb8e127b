import sys

from heygem.cli import main

sys.exit(main())
