"""Per-layer-type channel handlers (see `base.ChannelHandler`)."""

from kprune.core.handlers import attention  # noqa: F401  (registers handlers)
from kprune.core.handlers import channelwise  # noqa: F401
from kprune.core.handlers import conv  # noqa: F401
from kprune.core.handlers import einsum  # noqa: F401
from kprune.core.handlers import embedding  # noqa: F401
from kprune.core.handlers import indexing  # noqa: F401
from kprune.core.handlers import merge  # noqa: F401
from kprune.core.handlers import ops  # noqa: F401
from kprune.core.handlers import reduce  # noqa: F401
from kprune.core.handlers import recurrent  # noqa: F401
from kprune.core.handlers import reshape  # noqa: F401
from kprune.core.handlers.base import (ChannelHandler, find_handler,
                                  register_handler, unregister_handler)

__all__ = ["ChannelHandler", "find_handler", "register_handler",
           "unregister_handler"]
