"""Write the values of an override file into params.yaml (see kairos_curate.stages.overrides).

python scripts/apply_params.py configs/poster.yaml [--set section.key=value ...] [--params params.yaml]
"""

import sys

from kairos_curate.stages.overrides import main

if __name__ == "__main__":
    sys.exit(main())
