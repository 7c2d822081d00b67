"""``python -m astradup.demo_corpus OUT_DIR``: build the demo corpus (astradup/demo_corpus/build.py)."""
import sys

from astradup.demo_corpus.build import main

sys.exit(main())
