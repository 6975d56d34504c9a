"""``python -m samgeo_pipeline.serve OUTPUT_ROOT [options]``: the same as ``samgeo-pipeline serve``."""

import sys

from samgeo_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
