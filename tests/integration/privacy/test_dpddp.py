"""Multi-process DP-SGD with Opacus DPDDP on torch.distributed (2 local gloo processes)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loss(outputs, target):
    return torch.nn.functional.binary_cross_entropy_with_logits(
        outputs.squeeze(-1), target, reduction="none"
    )


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

        from safeguard.privacy import DPConfig, make_private

        torch.manual_seed(rank)  # different initial weights: DPDDP must synchronise them
        model = DPDDP(torch.nn.Linear(5, 1))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 5, generator=g)
        y = (x[:, 0] > 0).float()
        data = torch.utils.data.TensorDataset(x, y)
        run = make_private(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            data_loader=torch.utils.data.DataLoader(data, batch_size=8),
            config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, accountant="rdp", seed=0),
            ledger=os.path.join(out_dir, "ledger.jsonl"),
            loss_fn=_loss,
            distributed=True,
        )
        sizes = []
        for batch in run.batches():
            sizes.append(len(batch[0]))
            run.train_step(list(batch), loss_fn=_loss)
        weights = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump(
                {
                    "weights": weights,
                    "steps": run.ledger.steps(),
                    "epsilon": run.epsilon_spent(),
                    "q": run.sample_rate,
                    "sizes": sizes,
                },
                fh,
            )
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_train_in_step_and_account_once(tmp_path):
    # fork: the children inherit the imported libraries instead of importing them again.
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["weights"] == pytest.approx(r1["weights"], abs=1e-6)  # same model on both ranks
    assert r0["steps"] == r1["steps"] == 8  # one logical step per Poisson batch, q = 8/64
    assert r0["epsilon"] == pytest.approx(r1["epsilon"])
    assert r0["q"] == pytest.approx(8 / 64)
    # Each rank samples only its half of the data: about q·N/2 = 4 examples per step.
    assert 1 < sum(r0["sizes"]) / len(r0["sizes"]) < 7
    from safeguard.privacy import BudgetLedger
    from safeguard.privacy.ledger import compute_epsilon

    ledger = BudgetLedger.load(tmp_path / "ledger.jsonl")  # written by rank 0 only, chain intact
    assert ledger.steps() == 8
    assert ledger.epsilon_spent() == pytest.approx(compute_epsilon("rdp", [(1.0, 8 / 64, 8)], 1e-3))
