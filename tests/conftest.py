import os

import pytest
from hypothesis import HealthCheck, settings

from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager

settings.register_profile("default", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")


@pytest.fixture
def mm() -> MemoryManager:
    """A freshly booted kernel on a 16 MiB, 2-CPU x86_64 machine."""
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=2))
