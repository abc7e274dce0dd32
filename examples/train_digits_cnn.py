"""Train the small convolutional network on scikit-learn's 8x8 handwritten digits.

    python examples/train_digits_cnn.py [--epochs 100] [--seed 0]

The same as `python -m codegen.train --spec examples/digits_cnn.toml --epochs 100 --batch 16
--eta 0.3 --anneal`: the layer list (two blocks of a 3x3 convolution with ReLU and 2x2 max
pooling, 16 then 32 channels, flattened into a softmax layer of ten) is proven layer by layer,
printed into a NumPy module, imported and trained with mini-batch SGD, the rate falling linearly
from 0.3; each digit's 64 pixels are its [1, 8, 8] image, flat in C, H, W order. A quarter of the
digits (450, stratified) is held out and only scored. Needs the `demo` extra.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.train import main  # noqa: E402

DEFAULTS = ["--spec", str(ROOT / "examples" / "digits_cnn.toml"), "--epochs", "100", "--batch", "16",
            "--eta", "0.3", "--anneal"]

if __name__ == "__main__":
    sys.exit(main(DEFAULTS + sys.argv[1:]))
