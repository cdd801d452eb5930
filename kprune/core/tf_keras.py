"""Old path of `kprune.compat.tf_keras_bridge` (the same module object).

Deprecated: import `kprune.compat` (public names) or
`kprune.compat.tf_keras_bridge`.
"""

import sys

from kprune.compat import tf_keras_bridge

sys.modules[__name__] = tf_keras_bridge
