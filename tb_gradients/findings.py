"""`tb_gradients.findings` is `tb_gradients.analysis.findings` (the import
path of earlier versions; both name the same module)."""

import sys

from tb_gradients.analysis import findings

sys.modules[__name__] = findings
