"""Low-precision SGLD on scikit-learn's digits (Zhang, Wilson, De Sa, ICML 2022, in kind).

Bayesian multinomial logistic regression (the paper's strongly convex theory case) and a small MLP, each
sampled with SGLD in full precision and with weights, gradients, activations and errors in 8-bit and 4-bit
block floating point (SWALP's format, one shared exponent per row): SGLDLP-F (float32 accumulator),
SGLDLP-L (naive low-precision accumulator), VC (low-precision accumulator with variance-corrected
quantization), and SGD-LP (temperature 0, the same low-precision storage: the non-sampling baseline).
The posterior ensemble averages the predictive probabilities of one sample per epoch after burn-in;
printed: test accuracy, negative log-likelihood and expected calibration error (15 bins).

    python examples/sgld_lowprec.py            # about a minute on 2 cores
"""
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

from qsim.nn import recipes
from qsim.optim_sgld import SGLD

EPOCHS, BURN_IN, BATCH = 30, 10, 64
TEMPERATURE, PRIOR_VARIANCE = 1.0, 1.0
MODELS = {"logistic": dict(lr=0.5), "mlp": dict(lr=0.2)}


def digits():
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0  # (1797, 64) in [0, 1]
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1297], perm[1297:]
    return x[train], y[train], x[test], y[test]


def make_model(name: str) -> nn.Module:
    if name == "logistic":
        return nn.Sequential(nn.Linear(64, 10))
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Σ_b (n_b / n) |accuracy_b − confidence_b| over equal-width confidence bins."""
    confidence, prediction = probs.max(1)
    correct = (prediction == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.float().mean().item() * abs(correct[inside].mean().item() - confidence[inside].mean().item())
    return ece


def run(name: str, method: str, fmt, data, seed: int = 0) -> dict:
    """One chain; method: fp, sgldlp_f, sgldlp_l, vc or sgd_lp."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = make_model(name)
    n = len(ytr)
    optimizer = SGLD(model.parameters(), lr=MODELS[name]["lr"], datasize=n,
                     temperature=0.0 if method == "sgd_lp" else TEMPERATURE,
                     weight_decay=1 / (n * PRIOR_VARIANCE), generator=torch.Generator().manual_seed(seed))
    if method != "fp":
        accumulator = {"sgldlp_f": "full", "sgldlp_l": "low", "vc": "vc", "sgd_lp": "low"}[method]
        handle, optimizer = recipes.sgld(fmt, accumulator).apply(model, optimizer)
    order = torch.Generator().manual_seed(seed)
    ensemble, samples = torch.zeros(len(yte), 10), 0
    for epoch in range(EPOCHS):
        perm = torch.randperm(n, generator=order)
        for start in range(0, n, BATCH):
            batch = perm[start:start + BATCH]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xtr[batch]), ytr[batch]).backward()
            optimizer.step()
        if epoch >= BURN_IN and (method != "sgd_lp" or epoch == EPOCHS - 1):  # SGD-LP: its last iterate
            with torch.no_grad():
                ensemble += model(xte).softmax(1)
            samples += 1
    probs = ensemble / samples
    return dict(accuracy=(probs.argmax(1) == yte).float().mean().item(),
                nll=nn.functional.nll_loss(probs.clamp(min=1e-12).log(), yte).item(),
                ece=expected_calibration_error(probs, yte))


def main():
    torch.set_num_threads(1)  # small tensors: one thread beats two contended ones
    data = digits()
    start = time.perf_counter()
    print(f"{'model':9} {'format':13} {'method':9} {'acc %':>6} {'NLL':>6} {'ECE %':>6}")
    for name in MODELS:
        rows = [("float32", "fp", None)] + [(fmt, method, fmt) for fmt in ("bfp<8,dim=0>", "bfp<4,dim=0>")
                                            for method in ("sgldlp_f", "sgldlp_l", "vc", "sgd_lp")]
        for label, method, fmt in rows:
            r = run(name, method, fmt, data)
            print(f"{name:9} {label:13} {method:9} {100 * r['accuracy']:6.1f} {r['nll']:6.3f} {100 * r['ece']:6.2f}",
                  flush=True)
    print(f"({EPOCHS} epochs, ensemble of {EPOCHS - BURN_IN} samples; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
