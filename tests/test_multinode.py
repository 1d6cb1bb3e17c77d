"""Two simulated nodes of two CPU processes each (4 gloo ranks), launched as a cluster launches them.

The test starts ``torchrun --nnodes 2 --nproc-per-node 2 --node-rank N`` twice on this machine (one
per "node", both rendezvousing at 127.0.0.1, as the README's "Scaling out" section runs on two
hosts), and each rank runs this file as a script: a Lightning ``Trainer(num_nodes=2, devices=2,
strategy="ddp")`` trains a tiny video-text model on WebDataset shards through
:class:`~vidlit.data.InternVidDataModule` with 2 DataLoader workers per rank, in one shared
``default_root_dir``. It shows:

- shards are dealt to node x rank x worker readers, disjoint, covering every sample once, in the
  order each rank's workers take turns;
- the contrastive loss, its embeddings all-gathered across the ranks of both nodes, averaged by
  DDP, gives the loss and gradients of one process on the concatenated global batch;
- synced metrics (:class:`~vidlit.metrics.retrieval.RetrievalRecall`,
  :class:`~vidlit.metrics.classification.TopKAccuracy`) equal single-process ones;
- a step checkpoint holds every rank's loader position (gathered to rank 0, which writes it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zlib
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidlit.callbacks import ResumableCheckpoint
from vidlit.data import InternVidDataModule
from vidlit.layers.contrastive import clip_logit_scale, contrastive_loss
from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.retrieval import RetrievalRecall

NODES, DEVICES, WORKERS = 2, 2, 2
WORLD = NODES * DEVICES
SHARDS, PER_SHARD = 8, 3  # one shard per (rank, worker) reader; batches of 2 and 1 from each
SEED = 3
HERE = Path(__file__).resolve()


def features(key: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A sample's fixed video features ``[6]``, text embedding ``[5]`` and class, from its key alone."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    video, text = torch.randn(6, generator=generator), torch.randn(5, generator=generator)
    return video, F.normalize(text, dim=-1), int(torch.randint(3, (), generator=generator))


def synced_metrics(video, text, keys, shared_ranks) -> tuple[dict, dict]:
    """Recall of ``keys``' text -> video, and top-k accuracy with one view of the video "shared"
    per rank in ``shared_ranks`` (under DDP, ``compute()`` gathers every rank's updates)."""
    recall = RetrievalRecall(ks=(1, 5))
    recall.update(text, video, keys)
    accuracy = TopKAccuracy(num_classes=3, top_k=(1, 2))
    preds = [{"video_id": k, "scores": video[i, :3]} for i, k in enumerate(keys)]
    preds += [{"video_id": "shared", "scores": torch.eye(3)[r % 3]} for r in shared_ranks]
    targets = [{"video_id": k, "label": features(k)[2]} for k in keys]
    targets += [{"video_id": "shared", "label": 0} for _ in shared_ranks]
    accuracy.update(preds, targets)
    return recall.compute(), accuracy.compute()


class TinyVideoText(L.LightningModule):
    """A linear video tower over fixed per-key features and CLIP's loss, gathered across all ranks."""

    def __init__(self, out: str):
        super().__init__()
        torch.manual_seed(0)  # the same start on every rank, as DDP broadcasts it anyway
        self.proj = torch.nn.Linear(6, 5)
        self.log_scale = torch.nn.Parameter(torch.tensor(2.0))
        self.out = Path(out)
        self.steps: list[dict] = []

    def embed(self, keys: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        video, text, _ = zip(*(features(k) for k in keys))
        return F.normalize(self.proj(torch.stack(video)), dim=-1), torch.stack(text)

    def training_step(self, batch, batch_idx):
        video, text = self.embed(batch["video_ids"])
        loss, _ = contrastive_loss(video, text, clip_logit_scale(self.log_scale))
        params = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.steps.append({"keys": list(batch["video_ids"]), "loss": loss.detach(), "params": params})
        return loss

    def on_before_optimizer_step(self, optimizer):
        # DDP has averaged the gradients over the 4 ranks by now
        self.steps[-1]["grads"] = {k: p.grad.detach().clone() for k, p in self.named_parameters()}

    def on_train_end(self):
        # synced metrics: each rank updates with its own samples, compute() gathers all ranks
        keys = [k for step in self.steps for k in step["keys"]]
        with torch.no_grad():
            video, text = self.embed(keys)
        # one video seen by every rank, a view each: its views are averaged across the ranks
        recall, accuracy = synced_metrics(video, text, keys, [self.global_rank])
        trainer = self.trainer
        result = {
            "num_nodes": trainer.num_nodes,
            "node_rank": trainer.node_rank,
            "local_rank": trainer.local_rank,
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "steps": self.steps,
            "recall": recall,
            "accuracy": accuracy,
        }
        torch.save(result, self.out / f"rank{trainer.global_rank}.pt")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def write_data(root: Path) -> None:
    """``SHARDS`` shards of ``PER_SHARD`` clips keyed ``sh<shard>_<i>``, and an InternVid val list."""
    from vidlit.data.shards import encode_mp4, write_shards

    clip = encode_mp4(np.full((2, 16, 16, 3), 90, dtype=np.uint8), fps=10)
    for shard in range(SHARDS):
        samples = [{"key": f"sh{shard}_{i}", "mp4": clip, "caption": "c"} for i in range(PER_SHARD)]
        write_shards(samples, str(root / "shard-%02d.tar"), start_index=shard, maxcount=PER_SHARD)
    line = {"YoutubeID": "v", "Start_timestamp": "00:00:00.0", "End_timestamp": "00:00:01.0", "Caption": "c"}
    (root / "val.jsonl").write_text(json.dumps(line) + "\n")


def run_rank(root: Path, out: Path) -> None:
    """What each rank runs (started by torchrun)."""
    torch.set_num_threads(1)
    L.seed_everything(SEED, verbose=False)
    data = InternVidDataModule(
        root=str(root), shards=str(root / f"shard-{{00..{SHARDS - 1:02d}}}.tar"), shard_shuffle=0,
        num_frames=2, size=16, short_side=16, batch_size=2, num_workers=WORKERS,
    )  # fmt: skip
    checkpoints = ResumableCheckpoint(
        out / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=2
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=DEVICES, num_nodes=NODES, strategy="ddp", max_epochs=1,
        limit_val_batches=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=out,  # shared by both "nodes", as on a cluster file system
        callbacks=[checkpoints],
    )  # fmt: skip
    trainer.fit(TinyVideoText(str(out)), datamodule=data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.exclusive
@pytest.mark.slow
def test_two_nodes_of_two_processes(tmp_path):
    root, out = tmp_path / "data", tmp_path / "run"
    root.mkdir()
    out.mkdir()
    write_data(root)
    port = str(_free_port())
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MASTER_", "LOCAL_RANK", "NODE_RANK", "RANK"))
    }
    env.update(
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    )
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nnodes={NODES}",
                f"--nproc-per-node={DEVICES}",
                f"--node-rank={node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                str(HERE),
                str(root),
                str(out),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for node in range(NODES)
    ]
    logs = [node.communicate(timeout=240)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), "\n".join(log[-4000:] for log in logs)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    # Lightning saw 2 nodes of 2 processes
    for r, result in enumerate(ranks):
        assert (result["num_nodes"], result["world_size"], result["global_rank"]) == (NODES, WORLD, r)
        assert (result["node_rank"], result["local_rank"]) == divmod(r, DEVICES)

    # shards: rank r reads shards r and r + 4 (its workers 0 and 1), the workers taking turns
    for r, result in enumerate(ranks):
        a, b = f"sh{r}", f"sh{r + WORLD}"
        expected = [[f"{a}_0", f"{a}_1"], [f"{b}_0", f"{b}_1"], [f"{a}_2"], [f"{b}_2"]]
        assert [step["keys"] for step in result["steps"]] == expected
    seen = [k for result in ranks for step in result["steps"] for k in step["keys"]]
    assert sorted(seen) == sorted(f"sh{s}_{i}" for s in range(SHARDS) for i in range(PER_SHARD))

    # the gathered loss: each step's global batch (ranks in order) in one process
    model = TinyVideoText(str(out))
    for step in range(len(ranks[0]["steps"])):
        model.load_state_dict(ranks[0]["steps"][step]["params"])
        assert all(
            torch.equal(v, result["steps"][step]["params"][k])
            for result in ranks
            for k, v in ranks[0]["steps"][step]["params"].items()
        )  # every rank held the same weights
        model.zero_grad()
        video, text = model.embed([k for result in ranks for k in result["steps"][step]["keys"]])
        loss, _ = contrastive_loss(video, text, clip_logit_scale(model.log_scale), gather=False)
        loss.backward()
        mean = sum(result["steps"][step]["loss"] for result in ranks) / WORLD
        torch.testing.assert_close(mean, loss.detach())
        for name, param in model.named_parameters():
            for result in ranks:
                torch.testing.assert_close(result["steps"][step]["grads"][name], param.grad)

    # synced metrics equal the single-process ones, on every rank (the final weights: last.ckpt)
    final = TinyVideoText(str(out))
    final.load_state_dict(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    with torch.no_grad():
        video, text = final.embed(seen)
    expected_recall, expected_accuracy = synced_metrics(video, text, seen, range(WORLD))
    for result in ranks:
        assert result["recall"] == pytest.approx(expected_recall)
        assert result["accuracy"] == pytest.approx(expected_accuracy)

    # the step checkpoint (rank 0 wrote it) holds every rank's loader position
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (state["world_size"], state["num_workers"], len(state["ranks"])) == (WORLD, WORKERS, WORLD)
    assert all(rank["positions"] == {0: PER_SHARD, 1: PER_SHARD} for rank in state["ranks"])


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]), Path(sys.argv[2]))
