"""Channel gating end to end (Hua et al., NeurIPS 2019 / MICRO 2019), on a laptop in a couple of minutes.

1. Train a small CNN on scikit-learn's digits (16x16) twice, without and with channel gating (qsim.nn.gate_model:
   4 partitions, thresholds held near the target by the gate loss); compare accuracy and count the MACs the gates
   skip on the test images.
2. Run the gated CNN's measured masks on the channel-gating accelerator (hw_models/channel_gating_32x32.toml)
   under each conditional-pass schedule: per-layer table, achieved vs ideal speedup.
3. The built-in ResNet-18 (qsim.hw.resnet18), gated like the paper and trained briefly on digits upsampled to
   32x32, measured on one digit upsampled to 224x224: achieved vs ideal speedup next to the paper's 2.3x / 2.8x,
   and how the tile size of the compacted schedule moves the gap (per-tile imbalance across PE columns).

    python examples/channel_gating.py [--epochs 12] [--resnet-steps 20]
The same steps run as `qsim gating`.
"""
import argparse

import torch
from rich.console import Console

from qsim.hw import gating
from qsim.hw.gating_cli import gated_digits_run, resnet18_gated_workload, schedule_summaries, summary_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--resnet-steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: one thread is several times faster than two contended ones
    console = Console(width=140)

    run = gated_digits_run(epochs=args.epochs)
    stats = run["gates"].stats()
    wl = run["workload"]
    console.print(f"digits CNN, {args.epochs} epochs: test accuracy dense {run['dense_accuracy']:.1%}, "
                  f"gated {run['gated_accuracy']:.1%}")
    console.print(stats[["outputs", "gated_off", "base_macs", "conditional_macs", "dense_macs", "ideal_speedup"]]
                  .to_string(float_format=lambda v: f"{v:.3f}"))
    digits = schedule_summaries(wl)
    console.print(f"MAC reduction over the whole network (stem and classifier included, 64 test images): "
                  f"{digits['ideal'][1]['ideal_speedup']:.2f}x")
    console.print(gating.render(digits["compacted"][0]))
    console.print(summary_table("digits CNN (64 test images) on channel_gating_32x32", digits))

    if args.resnet_steps:
        resnet_wl = resnet18_gated_workload(steps=args.resnet_steps)
        resnet = schedule_summaries(resnet_wl)
        console.print(gating.render(resnet["compacted"][0]))
        console.print(summary_table("ResNet-18, 224x224, masks of a gated network trained briefly on digits",
                                    resnet, paper=True))
        accelerator = gating.load()
        for tile in (32, 256, 1024, 4096):
            s = gating.summary(gating.simulate(resnet_wl, accelerator.with_changes(tile_pixels=tile), "compacted"))
            console.print(f"compacted, tile_pixels={tile:5d}: achieved {s['achieved_speedup']:.2f}x of ideal "
                          f"{s['ideal_speedup']:.2f}x ({s['achieved_over_ideal']:.2f})")


if __name__ == "__main__":
    main()
