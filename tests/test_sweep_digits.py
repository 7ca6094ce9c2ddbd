"""The built-in digits job: roles reach the hooks and the optimizer (stored weights lie on the
format's grid, per layer group), and one short training returns finite metrics and the right costs."""
import math

import torch

from qsim import quantize
from qsim.sweep.jobs import digits_setup, make_digits_job, train_digits, _digits_data
from qsim.sweep.space import Config

CONFIG = Config.from_dict({"weight": "bf16", "conv.weight": "fp4_e2m1", "activation": "fp8_e4m3",
                           "error": "fp8_e5m2", "gradient": "bf16", "optimizer_state": "bf16"},
                          [("conv", ("Conv2d",))])


def on_grid(tensor, fmt):
    return torch.equal(quantize(tensor.detach(), fmt), tensor.detach())


def test_after_a_step_stored_weights_lie_on_their_groups_format():
    x, y, _, _ = _digits_data()
    model, handle, optimizers = digits_setup(CONFIG, lr=0.05, momentum=0.9)
    loss = torch.nn.functional.cross_entropy(model(x[:32]), y[:32])
    loss.backward()
    for opt in optimizers:
        opt.step()
    handle.remove()
    assert on_grid(model.conv1.weight, "fp4_e2m1") and on_grid(model.conv2.weight, "fp4_e2m1")
    assert on_grid(model.fc.weight, "bf16") and not on_grid(model.fc.weight, "fp4_e2m1")


def test_one_epoch_returns_finite_error_percentage_and_loss():
    metrics = train_digits(CONFIG, seed=0, epochs=1)
    assert 0.0 <= metrics["error"] <= 100.0 and math.isfinite(metrics["train_loss"])


def test_digits_costs_count_6090_parameters_and_batch_activations():
    job = make_digits_job(epochs=1, batch_size=32)
    assert job.profile.params == 6090
    # inputs kept per sample: conv1 1*8*8 = 64, conv2 16*4*4 = 256, fc 32*2*2 = 128
    assert [layer.input_elements for layer in job.profile.layers] == [64, 256, 128]
    fp32 = job.costs_of(Config.from_dict({}))
    assert fp32["memory_kib"] * 8 * 1024 == 6090 * 32 * 3 + 32 * (64 + 256 + 128) * 32
