"""Costs: memory and bit operations of a small model, counted by hand from its shapes."""
import pytest
import torch

from qsim.sweep.costs import (activation_memory_bits, bit_operations, gradient_memory_bits,
                              master_weight_memory_bits, optimizer_state_memory_bits, profile_model,
                              training_memory_bits, weight_memory_bits)
from qsim.sweep.space import Config


class Tiny(torch.nn.Module):
    """conv: 1 -> 2 channels, 3x3, no padding, on 4x4 (output 2x2x2); then batch norm; fc: 8 -> 3."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.norm = torch.nn.BatchNorm2d(2)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).flatten(1))


@pytest.fixture
def profile():
    return profile_model(Tiny(), torch.zeros(1, 1, 4, 4), batch_size=4, optimizer_states=1)


def test_profile_counts_parameters_inputs_and_macs_by_hand(profile):
    # conv: 2*1*3*3 + 2 = 20 params, input 1*4*4 = 16, MACs 8 outputs * 9 = 72
    # fc:   3*8 + 3 = 27 params, input 8, MACs 3 * 8 = 24; batch norm: 2 + 2 = 4 params outside weight layers
    assert [(l.name, l.kind, l.params, l.input_elements, l.macs) for l in profile.layers] == [
        ("conv", "Conv2d", 20, 16, 72), ("fc", "Linear", 27, 8, 24)]
    assert profile.other_params == 4 and profile.params == 51


def test_memory_of_one_training_step_matches_hand_count(profile):
    config = Config.from_dict({"weight": "fp8_e4m3", "activation": "bf16", "gradient": "fp16"})
    assert weight_memory_bits(profile, config) == 47 * 8 + 4 * 32           # 504
    assert activation_memory_bits(profile, config) == 4 * (16 + 8) * 16     # 1536
    assert gradient_memory_bits(profile, config) == 51 * 16                 # 816
    assert optimizer_state_memory_bits(profile, config) == 51 * 32          # momentum left in fp32: 1632
    assert master_weight_memory_bits(profile, config) == 0
    assert training_memory_bits(profile, config) == 504 + 1536 + 816 + 1632
    assert bit_operations(profile, config) == (72 + 24) * 8 * 16


def test_group_formats_apply_to_matching_layers_only(profile):
    """fc* takes 4-bit weights and a 2-state, 16-bit optimizer (as Adam would) keeps the conv layer global."""
    config = Config.from_dict({"weight": "fp8_e4m3", "fc.weight": "fp4_e2m1", "optimizer_state": "bf16",
                               "fc.optimizer_state": "fp8_e4m3", "master_weight": "fp16"}, [("fc", ("fc*",))])
    adam = profile.__class__(profile.layers, profile.batch_size, 2, profile.other_params)
    assert weight_memory_bits(profile, config) == 20 * 8 + 27 * 4 + 4 * 32
    assert optimizer_state_memory_bits(adam, config) == 2 * (20 * 16 + 27 * 8 + 4 * 16)
    assert master_weight_memory_bits(profile, config) == 47 * 16
    assert bit_operations(profile, config) == 72 * 8 * 32 + 24 * 4 * 32


def test_profile_needs_a_single_sample_example():
    with pytest.raises(ValueError, match="example_input"):
        profile_model(Tiny(), torch.zeros(2, 1, 4, 4), batch_size=4)
