"""Poisson sampling for DP-SGD: user-level sampling, the DP loader and its generators (adapter; imports torch).

Example-level sampling is Opacus' ``DPDataLoader``; user-level sampling (``group_by``) is
:class:`UserPoissonSampler`. The sampling and noise generators never come from torch's
global generator: they are seeded from the OS's entropy (never stored) unless a seed is
configured for a reproducibility experiment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from opacus.data_loader import DPDataLoader, wrap_collate_with_empty
from torch import nn
from torch.utils.data import DataLoader, Sampler

from safeguard.errors import ConfigError, DataError, missing_dependency
from safeguard.privacy.config import DPConfig
from safeguard.privacy.plan import DPPlan

__all__ = ["UserPoissonSampler"]


class UserPoissonSampler(Sampler[list[int]]):
    """Poisson sampling of users: each user is in a batch with probability q, with ≤ k examples.

    A sampled user brings at most ``per_user`` of their examples (drawn without replacement);
    with ``per_user`` = 1 a user's contribution to a step is one clipped gradient, and with more
    the user's example gradients are summed before clipping (see :func:`make_private`), so
    example-level accounting holds at the user level with N = users.
    """

    def __init__(
        self,
        groups: Sequence[Any],
        *,
        sample_rate: float,
        steps: int,
        generator: torch.Generator | None,
        per_user: int = 1,
    ):
        index: dict[Any, list[int]] = {}
        for i, g in enumerate(groups):
            index.setdefault(g, []).append(i)
        self.members = list(index.values())
        self.sample_rate = sample_rate
        self.steps = steps
        self.generator = generator
        self.per_user = per_user

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.members)
        for _ in range(self.steps):
            take = torch.rand(n, generator=self.generator) < self.sample_rate
            picks = []
            for u in torch.nonzero(take).flatten().tolist():
                members = self.members[u]
                if self.per_user == 1:
                    j = int(torch.randint(len(members), (1,), generator=self.generator))
                    picks.append(members[j])
                else:
                    order = torch.randperm(len(members), generator=self.generator)[: self.per_user]
                    picks.extend(members[j] for j in order.tolist())
            yield picks


def _group_ids(dataset: Any, group_by: str) -> list[Any]:
    try:
        column = dataset[group_by]  # datasets.Dataset column access
        if len(column) == len(dataset):
            return list(column)
    except (KeyError, TypeError, IndexError, ValueError):
        pass
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not isinstance(item, Mapping) or group_by not in item:
            raise DataError(
                f"`group_by` (={group_by!r}): example {i} has no such field; every example must carry "
                "the user (patient) id under that key"
            )
        out.append(_user_key(item[group_by]))
    return out


def _user_key(value: Any) -> Any:
    """A user id as a hashable value (a 0-d tensor becomes its number)."""
    return value.item() if isinstance(value, torch.Tensor) else value


def _user_collate(
    collate: Callable[[list[Any]], Any] | None, group_by: str, *, user_indices: bool = False
) -> Callable[[list[Any]], Any]:
    """Collate without the user ids under ``group_by``.

    With ``user_indices``, they come back under ``group_by`` as per-batch user indices
    (0..users−1), which sum a user's examples before clipping.
    """
    from torch.utils.data import default_collate

    inner = collate or default_collate

    def collate_fn(items: list[Any]) -> Any:
        keys = [_user_key(it[group_by]) for it in items] if user_indices else []
        cleaned = [
            {k: v for k, v in it.items() if k != group_by} if isinstance(it, Mapping) else it
            for it in items
        ]
        out = inner(cleaned)
        if user_indices:
            index: dict[Any, int] = {}
            out[group_by] = torch.tensor(
                [index.setdefault(k, len(index)) for k in keys], dtype=torch.long
            )
        return out

    return collate_fn


def _dataset_size(loader: DataLoader) -> int:
    try:
        return len(loader.dataset)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(
            "`data_loader` must be over a map-style dataset with a length (Poisson sampling)"
        ) from exc


def _privacy_units(data_loader: DataLoader, config: DPConfig) -> tuple[list[Any] | None, int]:
    """(the user id of each example, or ``None``; N, the number of privacy units)."""
    n_examples = _dataset_size(data_loader)
    if config.group_by:
        groups = _group_ids(data_loader.dataset, config.group_by)
        return groups, len(set(groups))
    return None, n_examples


def _entropy_seed() -> int:
    """64 bits from the operating system's entropy pool, for a generator seed never stored."""
    return int.from_bytes(os.urandom(8), "little")


def _prepare_generators(config: DPConfig, model: nn.Module) -> tuple[Any, Any]:
    """The (sampling, noise) generators of a run.

    DP randomness never comes from torch's global generator (a user's manual_seed would fix
    it): without an explicit seed both generators are seeded from the OS's entropy, and
    those seeds are not kept anywhere.
    """
    noise_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if config.seed is not None and not config.secure_mode:
        seed_gen = torch.Generator().manual_seed(config.seed)
        noise_gen = torch.Generator(device=noise_device).manual_seed(config.seed + 1)
    else:
        seed_gen = torch.Generator().manual_seed(_entropy_seed())
        noise_gen = torch.Generator(device=noise_device).manual_seed(_entropy_seed())
    if config.secure_mode:
        try:
            import torchcsprng as csprng  # type: ignore[import-not-found]
        except ImportError as exc:
            raise missing_dependency("torchcsprng", "dp") from exc
        seed_gen = noise_gen = csprng.create_random_device_generator("/dev/urandom")
    return seed_gen, noise_gen


def _prepare_data_loader(
    data_loader: DataLoader,
    config: DPConfig,
    plan: DPPlan,
    groups: list[Any] | None,
    generator: Any,
    distributed: bool,
) -> DataLoader:
    """The loader that samples what the accountant assumes (users, examples, or as given)."""
    dataset = data_loader.dataset
    if groups is not None:
        if distributed:
            raise ConfigError("`group_by` with `distributed=True` is not supported yet")
        sampler = UserPoissonSampler(
            groups,
            sample_rate=plan.sample_rate,
            steps=plan.steps_per_epoch,
            generator=generator,
            per_user=config.max_examples_per_user,
        )
        first = _user_collate(
            data_loader.collate_fn,
            config.group_by or "",
            user_indices=config.max_examples_per_user > 1,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=wrap_collate_with_empty(
                collate_fn=first, batch_first=True, rand_on_empty=False
            ),
            num_workers=data_loader.num_workers,
        )
    if config.poisson_sampling:
        dp_loader = DPDataLoader(
            dataset,
            sample_rate=plan.sample_rate,
            collate_fn=data_loader.collate_fn,
            distributed=distributed,
            num_workers=data_loader.num_workers,
        )
        # Only the sampler draws from the seeded generator (a DataLoader would also draw a
        # base seed from it each time an iterator starts, which breaks exact resumption).
        dp_loader.batch_sampler.generator = generator
        return dp_loader
    return data_loader
