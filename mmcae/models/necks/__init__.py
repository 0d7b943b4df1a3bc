from .cae_regressor import *  # noqa: F401,F403
