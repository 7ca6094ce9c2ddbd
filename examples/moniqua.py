"""Decentralized SGD with quantized communication on scikit-learn's digits (Lu, De Sa, Moniqua, ICML 2020,
in kind): multinomial logistic regression (650 parameters), the training set sorted by label and split
over the workers (each holds one or two digits), each taking minibatches from its own shard. Compared: full-precision D-PSGD, naive quantized
communication (x / R on a b-bit fixed-point grid, R bounding |x|) and Moniqua ((x / θ) mod 1 on the b-bit
modular grid), at 1, 2, 4 and 8 bits, on a ring of 8, a 3 × 3 torus and a complete graph of 8.

θ and R come from the full-precision run of each graph: θ = 4 × its largest disagreement max |x_j − x_i|
(twice the bound recovery needs), R = the power of two above 2 max |x|. Printed, for the models the
workers hold (each worker's own, averaged over workers; the average model x̄ moves by exactly the mean
gradient step under every scheme, so it hides the communication error): the training loss at some
iterations, the bits sent per iteration, the megabits it took to reach a loss of 0.5 (— where never),
and the test accuracy at the end.

    python examples/moniqua.py            # about a minute on 2 cores
"""
import math
import time

import torch
from sklearn.datasets import load_digits

from qsim.moniqua import Communication, decentralized_sgd, gossip_matrix, moniqua_bits

STEPS, LR, BATCH, L2 = 400, 0.5, 16, 1e-4
REPORT = (50, 100, 200, 400)
TARGET = 0.5
GRAPHS = (("ring", 8), ("torus", 9), ("complete", 8))
BITS = (1, 2, 4, 8)


def digits():
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float64) / 16.0  # (1797, 64)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[perm[:1297]], y[perm[:1297]], x[perm[1297:]], y[perm[1297:]]


def unpack(x: torch.Tensor):
    """(..., 650) -> weights (..., 10, 64), bias (..., 10)."""
    return x[..., :640].reshape(*x.shape[:-1], 10, 64), x[..., 640:]


def loss_of(x: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    """The regularized training loss of each worker's own model, averaged over workers: X (W, 650)."""
    weight, bias = unpack(x)                                              # (W, 10, 64), (W, 10)
    logits = torch.einsum("ni,wki->wnk", features, weight) + bias[:, None]  # (W, N, 10)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat(len(x)))
    return nll.item() + L2 / 2 * x.pow(2).sum(1).mean().item()


def accuracy_of(x: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Test accuracy of each worker's own model, averaged over workers: X (W, 650)."""
    weight, bias = unpack(x)
    logits = torch.einsum("ni,wki->wnk", features, weight) + bias[:, None]
    return (logits.argmax(-1) == labels).double().mean().item()


def worker_gradients(features, labels, workers: int, seed: int):
    """Each worker's minibatch gradient of the regularized cross entropy, vectorised: X (W, 650) -> (W, 650)."""
    # Heterogeneous shards (sorted by label: each worker sees one or two digits), so that the workers need
    # each other: without communication each would fit its own classes only.
    shards = torch.argsort(labels, stable=True)[: len(labels) // workers * workers].reshape(workers, -1)
    generator = torch.Generator().manual_seed(seed)

    def gradients(x: torch.Tensor, step: int) -> torch.Tensor:
        pick = torch.randint(0, shards.shape[1], (workers, BATCH), generator=generator)
        rows = torch.gather(shards, 1, pick)                              # (W, B)
        f, onehot = features[rows], torch.nn.functional.one_hot(labels[rows], 10).double()  # (W, B, 64), (W, B, 10)
        weight, bias = unpack(x)                                          # (W, 10, 64), (W, 10)
        error = (torch.einsum("wbi,wki->wbk", f, weight) + bias[:, None]).softmax(-1) - onehot  # (W, B, 10)
        grad_weight = torch.einsum("wbk,wbi->wki", error, f) / BATCH      # (W, 10, 64)
        return torch.cat([grad_weight.reshape(workers, -1), error.mean(1)], 1) + L2 * x

    return gradients


def main():
    torch.set_num_threads(1)  # small tensors: one thread beats two contended ones
    xtr, ytr, xte, yte = digits()
    start = time.perf_counter()
    print(f"{'graph':11} {'method':8} {'bits':>4} " + " ".join(f"{'loss@' + str(k):>8}" for k in REPORT)
          + f" {'Mbit/iter':>9} {'Mbit to ' + str(TARGET):>12} {'test acc %':>10}")
    for graph, workers in GRAPHS:
        mixing = gossip_matrix(graph, workers)

        def run(communication):
            return decentralized_sgd(worker_gradients(xtr, ytr, workers, seed=1), torch.zeros(650), mixing, STEPS,
                                     LR, communication, loss=lambda x: loss_of(x, xtr, ytr), every=10, seed=2)

        full = run(Communication("full"))
        theta = 4 * max(full["disagreement"])
        scale = 2.0 ** math.ceil(math.log2(2 * full["x"].abs().max().item()))
        runs = [("d-psgd", 32, full)]
        for bits in BITS:
            runs.append(("naive", bits, run(Communication("naive", f"fixed<{bits},{bits - 1}>", scale=scale))))
            runs.append(("moniqua", bits, run(Communication("moniqua", moniqua_bits(bits), theta=theta))))
        for method, bits, h in runs:
            at = {k: loss for k, loss in zip(h["iteration"], h["loss"])}
            reached = next((b for b, loss in zip(h["bits"], h["loss"]) if loss <= TARGET), None)
            per_iteration = h["bits"][1] / h["iteration"][1]
            print(f"{graph + '-' + str(workers):11} {method:8} {bits:4d} "
                  + " ".join(f"{at[k]:8.3f}" for k in REPORT)
                  + f" {per_iteration / 1e6:9.3f} {'—' if reached is None else f'{reached / 1e6:.1f}':>12}"
                  + f" {100 * accuracy_of(h['x'], xte, yte):10.1f}", flush=True)
        print(f"{'':11} (θ = {theta:.3g}, R = {scale:g})")
    print(f"({STEPS} iterations, lr {LR}, batch {BATCH} per worker; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
