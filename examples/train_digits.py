"""Train a generated NumPy module on scikit-learn's 8x8 handwritten digits.

    python examples/train_digits.py [--epochs 30] [--plot learning_curve.png]

The same as `python -m codegen.train` (codegen/train.py): a 64-32-10 spec (sigmoid, softmax,
log-likelihood) is printed into a NumPy module from its proven matrix forms, imported, and
trained with mini-batch SGD; a quarter of the digits is held out. Needs the `demo` extra.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
