from .compile import *  # noqa: F401,F403
from .hooks import *  # noqa: F401,F403
from .layer_decay import *  # noqa: F401,F403
from .nonfinite import *  # noqa: F401,F403
from .lazy_log import *  # noqa: F401,F403
from .worker_exit import *  # noqa: F401,F403
from .preemption import *  # noqa: F401,F403
