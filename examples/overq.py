"""OverQ reproduction on scikit-learn digits: the same study as `qsim overq` (qsim/overq_cli.py).

    python examples/overq.py [--bits 4] [--cascade 2] [--epochs 15] [--no-hw]

Trains a small CNN, then post-training-quantizes it seven ways (fp32, best clip, OCS of the weights,
OCS of the activations, OverQ range, OverQ range+precision, twice the bits) and prints accuracy and
activation MSE, OverQ's outlier coverage as the cascade grows (0, 1, 2, 4), and the hardware cost of
OverQ on a weight-stationary systolic array beside the bits- and 2·bits-wide baselines (the CNN and the
built-in ResNet-18).
"""
import argparse
import sys

from qsim import overq_cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=overq_cli.HELP)
    overq_cli.add_arguments(parser)
    sys.exit(overq_cli.run(parser.parse_args()))
