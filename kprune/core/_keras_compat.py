"""Old path of `kprune.compat.keras_private` (the same module object).

Deprecated: import `kprune.compat.keras_private`.
"""

import sys

from kprune.compat import keras_private

sys.modules[__name__] = keras_private
