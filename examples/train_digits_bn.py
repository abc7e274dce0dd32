"""Train the batch-norm + residual layer list on scikit-learn's 8x8 handwritten digits.

    python examples/train_digits_bn.py [--epochs 20] [--seed 0]

The same as `python -m codegen.train --spec examples/digits_bn.toml --epochs 20 --batch 16
--eta 0.1 --anneal`: the layer list (dense, batch norm, ReLU, a residual block with its own batch
norm, a softmax output) is proven layer by layer, printed into a NumPy module, imported and
trained with mini-batch SGD, keeping running averages of the batch statistics; a quarter of the
digits is held out and scored with those averages (forward(..., training=False)). Needs the
`demo` extra.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.train import main  # noqa: E402

DEFAULTS = ["--spec", str(ROOT / "examples" / "digits_bn.toml"), "--epochs", "20", "--batch", "16",
            "--eta", "0.1", "--anneal"]

if __name__ == "__main__":
    sys.exit(main(DEFAULTS + sys.argv[1:]))
