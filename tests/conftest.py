import pytest
import torch

# Tiny models gain nothing from intra-op threads, and with other processes on a 2-core
# machine OpenMP spin-waiting makes them several times slower: one thread per test process.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_after_each_test():
    """Verbs invoked in-process (`--threads`, the scorers' and zoo check's defaults) set torch's
    global thread count; a later test comparing an in-process run with a one-thread `bench`
    subprocess bit for bit must not inherit it (float sums differ with the thread count)."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def random_zoo(tmp_path_factory):
    """A tiny-world zoo with random weights in the shipped layout (seconds to build)."""
    from tests.helpers.tinyworld import make_random_zoo

    return make_random_zoo(tmp_path_factory.mktemp("random_zoo"))
