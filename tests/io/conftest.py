import sys
from pathlib import Path

# Let tests in tests/io and tests/robustness import the shared builders in helpers.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))
