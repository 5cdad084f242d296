"""``python -m provider_proxy``: the same as the ``provider-proxy`` command."""

import sys

from ._cli import main

sys.exit(main())
