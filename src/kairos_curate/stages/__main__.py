"""``python -m kairos_curate.stages <stage>``."""

import sys

from kairos_curate.stages.runner import main

sys.exit(main())
