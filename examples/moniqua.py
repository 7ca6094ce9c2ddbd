"""Decentralized SGD with quantized communication on scikit-learn's digits (Lu, De Sa, Moniqua, ICML 2020,
in kind): multinomial logistic regression (650 parameters), the training set sorted by label and split
over the workers (each holds one or two digits), each taking minibatches from its own shard (the workload
is qsim.moniqua_sweep.DigitsLogistic). Compared: full-precision D-PSGD, naive quantized communication
(x / R on a b-bit fixed-point grid, R bounding |x|) and Moniqua ((x / θ) mod 1 on the b-bit modular
grid), at 1, 2, 4 and 8 bits, on a ring of 8, a 3 × 3 torus and a complete graph of 8.

θ and R come from the full-precision run of each graph: θ = 4 × its largest disagreement max |x_j − x_i|
(twice the bound recovery needs), R = the power of two above 2 max |x|. Printed, for the models the
workers hold (each worker's own, averaged over workers; the average model x̄ moves by exactly the mean
gradient step under every scheme, so it hides the communication error): the training loss at some
iterations, the bits sent per iteration, the megabits it took to reach a loss of 0.5 (— where never),
and the test accuracy at the end.

    python examples/moniqua.py            # about a minute on 2 cores

The same grid, stored and resumable, on the sweep machinery: qsim.moniqua_sweep.run_moniqua_grid.
"""
import math
import time

import torch

from qsim.moniqua import Communication, decentralized_sgd, gossip_matrix, moniqua_bits
from qsim.moniqua_sweep import DigitsLogistic

STEPS, LR, BATCH, L2 = 400, 0.5, 16, 1e-4
REPORT = (50, 100, 200, 400)
TARGET = 0.5
GRAPHS = (("ring", 8), ("torus", 9), ("complete", 8))
BITS = (1, 2, 4, 8)


def main():
    torch.set_num_threads(1)  # small tensors: one thread beats two contended ones
    problem = DigitsLogistic(batch=BATCH, l2=L2)
    start = time.perf_counter()
    print(f"{'graph':11} {'method':8} {'bits':>4} " + " ".join(f"{'loss@' + str(k):>8}" for k in REPORT)
          + f" {'Mbit/iter':>9} {'Mbit to ' + str(TARGET):>12} {'test acc %':>10}")
    for graph, workers in GRAPHS:
        mixing = gossip_matrix(graph, workers)

        def run(communication):
            return decentralized_sgd(problem.gradients(workers, seed=1), torch.zeros(650), mixing, STEPS, LR,
                                     communication, loss=problem.loss, every=10, seed=2)

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
                  + f" {100 * problem.accuracy(h['x']):10.1f}", flush=True)
        print(f"{'':11} (θ = {theta:.3g}, R = {scale:g})")
    print(f"({STEPS} iterations, lr {LR}, batch {BATCH} per worker; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
