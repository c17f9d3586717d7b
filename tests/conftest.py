import torch

# Tiny models gain nothing from intra-op threads, and with other processes on a 2-core
# machine OpenMP spin-waiting makes them several times slower: one thread per test process.
torch.set_num_threads(1)
