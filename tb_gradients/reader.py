"""`tb_gradients.reader` is `tb_gradients.analysis.reader` (the import path of
earlier versions; both name the same module)."""

import sys

from tb_gradients.analysis import reader

sys.modules[__name__] = reader
