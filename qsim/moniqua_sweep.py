"""Moniqua grids on the sweep machinery: bits × graph × workers, stored and resumable.

Exports DigitsLogistic (the workload: multinomial logistic regression on scikit-learn's digits, the training
set sorted by label and split over the workers), digits_job (a qsim.sweep job function) and
run_moniqua_grid. A configuration's "weight" role is the format of the messages (the parameters the workers
send; absent: float32, i.e. D-PSGD); graph, workers, method, θ and R are the job's params, so each
(graph, workers, method) is one Job and its results are keyed by them. run_sweep's executor runs the
configurations in parallel processes (a dask.distributed Client runs them on a cluster); the W workers of
one run stay vectorised in one process.
"""
from __future__ import annotations

import functools

import torch

from qsim.moniqua import Communication, decentralized_sgd, gossip_matrix, moniqua_bits
from qsim.sweep import Config, Job, ResultStore, run_sweep

DIM = 650  # 10 × 64 weights + 10 biases


class DigitsLogistic:
    """Regularized multinomial logistic regression on digits, each worker holding a label-sorted shard
    (one or two digits: the workers need each other). Parameters are flat (…, 650) vectors."""

    def __init__(self, batch: int = 16, l2: float = 1e-4):
        from sklearn.datasets import load_digits
        d = load_digits()
        x = torch.tensor(d.data, dtype=torch.float64) / 16.0  # (1797, 64)
        y = torch.tensor(d.target)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        self.train = x[perm[:1297]], y[perm[:1297]]
        self.test = x[perm[1297:]], y[perm[1297:]]
        self.batch, self.l2 = batch, l2

    @staticmethod
    def _logits(x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        weight, bias = x[..., :640].reshape(*x.shape[:-1], 10, 64), x[..., 640:]  # (W, 10, 64), (W, 10)
        return torch.einsum("ni,wki->wnk", features, weight) + bias[:, None]  # (W, N, 10)

    def loss(self, x: torch.Tensor) -> float:
        """The training loss of each worker's own model, averaged over workers: X (W, 650)."""
        features, labels = self.train
        logits = self._logits(x, features)
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat(len(x)))
        return nll.item() + self.l2 / 2 * x.pow(2).sum(1).mean().item()

    def accuracy(self, x: torch.Tensor) -> float:
        """Test accuracy of each worker's own model, averaged over workers."""
        features, labels = self.test
        return (self._logits(x, features).argmax(-1) == labels).double().mean().item()

    def gradients(self, workers: int, seed: int):
        """Each worker's minibatch gradient from its own shard, vectorised: X (W, 650) -> (W, 650)."""
        features, labels = self.train
        shards = torch.argsort(labels, stable=True)[: len(labels) // workers * workers].reshape(workers, -1)
        generator = torch.Generator().manual_seed(seed)

        def gradients(x: torch.Tensor, step: int) -> torch.Tensor:
            rows = torch.gather(shards, 1, torch.randint(0, shards.shape[1], (workers, self.batch),
                                                         generator=generator))  # (W, B)
            f = features[rows]  # (W, B, 64)
            error = self._logits_batch(x, f).softmax(-1) - torch.nn.functional.one_hot(labels[rows], 10)  # (W, B, 10)
            grad_weight = torch.einsum("wbk,wbi->wki", error, f) / self.batch  # (W, 10, 64)
            return torch.cat([grad_weight.reshape(workers, -1), error.mean(1)], 1) + self.l2 * x

        return gradients

    @staticmethod
    def _logits_batch(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Each worker's logits on its own batch: X (W, 650), f (W, B, 64) -> (W, B, 10)."""
        weight, bias = x[:, :640].reshape(-1, 10, 64), x[:, 640:]
        return torch.einsum("wbi,wki->wbk", f, weight) + bias[:, None]


@functools.lru_cache(maxsize=1)
def _problem() -> DigitsLogistic:
    return DigitsLogistic()


def communication_for(method: str, fmt: str | None, theta: float, scale: float) -> Communication:
    """The Communication of one grid point; fmt None (the role left out) sends float32."""
    if fmt is None or method == "full":
        return Communication("full")
    return Communication(method, fmt, theta=theta) if method == "moniqua" else Communication(method, fmt, scale=scale)


def digits_job(config: Config, seed: int, graph: str, workers: int, method: str, steps: int, lr: float,
               theta: float, scale: float) -> dict:
    """One decentralized run; metrics: final loss, test error and megabits sent."""
    problem = _problem()
    run = decentralized_sgd(problem.gradients(workers, seed), torch.zeros(DIM), gossip_matrix(graph, workers),
                            steps, lr, communication_for(method, config.get("weight"), theta, scale),
                            loss=problem.loss, every=steps, seed=seed)
    return {"loss": run["loss"][-1], "error": 1 - problem.accuracy(run["x"]), "mbit": run["bits"][-1] / 1e6}


def message_format(method: str, bits: int) -> str:
    """The b-bit message grid: Moniqua's modular residue grid, or naive's fixed<b, b−1> for x / R in [−1, 1)."""
    return moniqua_bits(bits).spec if method == "moniqua" else f"fixed<{bits},{bits - 1}>"


def run_moniqua_grid(store: ResultStore, bits=(1, 2, 4, 8), graphs=(("ring", 8),), methods=("moniqua", "naive"),
                     steps: int = 400, lr: float = 0.5, theta: float = 2.0, scale: float = 4.0, executor=None,
                     seed: int = 0, progress: bool = False) -> dict:
    """Runs (or resumes: stored results are skipped) every method × bits on every (graph, workers), plus
    full-precision D-PSGD per graph; returns {job name: SweepSummary}; store.to_dataframe(name) holds the
    results (columns loss, error, mbit and the message format)."""
    summaries = {}
    for graph, workers in graphs:
        gossip_matrix(graph, workers)  # bad graphs fail before any work
        for method in ("full",) + tuple(methods):
            params = dict(graph=graph, workers=workers, method=method, steps=steps, lr=lr, theta=theta, scale=scale)
            job = Job(f"moniqua-{method}-{graph}-{workers}", digits_job, params=tuple(params.items()),
                      keys=frozenset({"weight"}), objectives=("loss", "mbit"))
            configs = [Config.from_dict({})] if method == "full" else \
                [Config.from_dict({"weight": message_format(method, b)}) for b in bits]
            summaries[job.name] = run_sweep(job, configs, store, executor=executor, seed=seed, progress=progress)
    return summaries
