"""``python -m tb_gradients.diagnose``: runs `tb_gradients.analysis.diagnose`
(the command's path of earlier versions, kept)."""

import sys

from tb_gradients.analysis import diagnose

if __name__ == "__main__":
    sys.exit(diagnose.main())
else:
    sys.modules[__name__] = diagnose
