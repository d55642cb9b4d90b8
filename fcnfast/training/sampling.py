"""A run's data order and randomness as pure functions of (seed, iteration, rank, sample position).

Iteration ``t`` uses samples ``[t*G, (t+1)*G)`` of an endless stream of per-epoch permutations
drawn from ``seed`` (``G`` = global batch); rank ``r`` takes the ``r``-th slice of ``batch_size``
of them. Dropout masks are drawn from ``(seed, iteration, rank)`` and augmentation from
``(seed, sample position)``, so a resumed run continues exactly where an uninterrupted run
would be: same batches, same masks, same losses.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..datasets import RandomFlipScale, SegmentationDataset

__all__ = ["TAG_DROPOUT", "TAG_INIT", "IterationBatchSampler", "TrainSamples", "mix_seed"]

# Distinct streams drawn from one run seed.
TAG_INIT, TAG_EPOCH, TAG_AUGMENT, TAG_DROPOUT = 0, 1, 2, 3


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (stable across runs, platforms and processes)."""
    words = [int(v) & 0xFFFFFFFFFFFFFFFF for v in values]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) >> 1


class IterationBatchSampler(torch.utils.data.Sampler):
    """Batches for iterations ``start .. stop-1`` of a run, a pure function of (seed, iteration).

    The sample stream is an endless concatenation of permutations of ``range(n)`` (epoch ``e`` is
    permuted by a generator seeded from ``(seed, e)``). Iteration ``t`` owns the global batch of
    stream positions ``[t*G, (t+1)*G)`` with ``G = batch_size * world_size``; rank ``r`` yields
    positions ``[t*G + r*B, t*G + (r+1)*B)``. So the ranks' batches together are exactly the
    batch a single process with batch G draws, and a run resumed at iteration ``t`` sees the
    same batches as one that never stopped. (Unlike ``DistributedSampler``, no sample is
    repeated to even out the shards, and starting mid-epoch needs no skipping.)

    Yields lists of ``(dataset index, stream position)`` pairs; the position seeds augmentation.
    """

    def __init__(self, n: int, batch_size: int, *, start: int, stop: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0) -> None:
        if n < 1:
            raise ValueError("IterationBatchSampler: empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"IterationBatchSampler: rank {rank} outside world size {world_size}")
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.start, self.stop = start, max(start, stop)
        self._epoch: Optional[int] = None
        self._perm: Optional[List[int]] = None

    def _permutation(self, epoch: int) -> List[int]:
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, TAG_EPOCH, epoch))
            self._perm = torch.randperm(self.n, generator=g).tolist()
            self._epoch = epoch
        return self._perm  # type: ignore[return-value]

    def position_index(self, position: int) -> int:
        """The dataset index at ``position`` of the sample stream."""
        epoch, i = divmod(position, self.n)
        return self._permutation(epoch)[i]

    def batch(self, iteration: int) -> List[Tuple[int, int]]:
        """This rank's (index, position) pairs for 0-based ``iteration``."""
        first = iteration * self.batch_size * self.world_size + self.rank * self.batch_size
        return [(self.position_index(p), p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for t in range(self.start, self.stop):
            yield self.batch(t)

    def __len__(self) -> int:
        return self.stop - self.start


class TrainSamples(torch.utils.data.Dataset):
    """Indexes a dataset by ``(index, stream position)``; augmentation is seeded by the position,
    so it does not depend on worker count, process or resume point."""

    def __init__(self, base: SegmentationDataset, transform: Optional[RandomFlipScale], seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        index, position = key
        image, label = self.base[index]
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(mix_seed(self.seed, TAG_AUGMENT, position))
                image, label = self.transform(image, label)
        return image, label
