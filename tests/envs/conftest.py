import pytest

from rlplast.envs.vec import EnvConfig
from tests.envs.envtools import BUSY


@pytest.fixture
def busy_cfg() -> EnvConfig:
    """Ant-v5 whose episodes end often and whose friction changes every 50 run steps."""
    return EnvConfig.model_validate(BUSY)
