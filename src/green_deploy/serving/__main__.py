import sys

from green_deploy.serving.cli import main

sys.exit(main())
