"""rlplast: a benchmark suite for loss of plasticity in non-stationary control.

Importing the package registers the Gymnasium ids ``rlplast/SlipperyAnt-v0`` and ``rlplast/Ant-v0``.
"""

from rlplast.envs import register_envs

register_envs()

__version__ = "0.1.0"
