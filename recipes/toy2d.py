"""Train a consistency model on a 2-D toy distribution (the main quick-start job).

    python recipes/toy2d.py                       # two moons, GCM-CU, about 35 s of training
    python recipes/toy2d.py --dataset two_moons --preset gcm_vu --steps 4000

Trains with `model.fit` (Keras progress bar), then writes to the output folder:

* `metrics.json`: 1- and 2-step energy distance and sliced Wasserstein-2 to fresh
  ground-truth samples, the same figures between two independent ground-truth
  sets (the floor: what a perfect model would score with this many samples),
  and those of the untrained model;
* `samples.png`: data vs 1-step vs 2-step samples.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="two_moons",
                        help="checkerboard, eight_gaussians, two_moons, swiss_roll, rings, pinwheel")
    parser.add_argument("--preset", default="gcm_cu",
                        help="any keras_gcm preset (gcm_cu, gcm_vu, cu_a_baseline, ...)")
    # 2000 steps at batch 512 with the learning rate decayed to 0 (cosine): 14.6-15.1 s of
    # training, 23 s wall, on 2 quiet cores (JAX, seeds 0-4)
    # (1-step sliced W2 / ground-truth floor over seeds 0-4: 2.03, 2.93, 1.70, 1.50, 1.89 with
    # cosine decay vs 2.38, 3.13, 2.09, 1.93, 2.43 at a constant rate; energy distance 3.1-5.1 %
    # of the untrained model's vs 5.2-7.0 %). See docs/quickstart.md.
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                        help="cosine: decay the learning rate to 0 over the run "
                             "(keras.optimizers.schedules.CosineDecay); constant: no decay")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--hidden-units", type=int, default=128)
    parser.add_argument("--num-blocks", type=int, default=3)
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/toy2d")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: mixed_bfloat16 network, float32 loss math")
    parser.add_argument("--verbose", type=int, default=1, help="fit verbosity (0, 1, 2)")
    _common.add_backend_argument(parser)
    _common.add_distribution_arguments(parser)
    args = parser.parse_args(argv)
    _common.check_flags(
        parser, args, positive=("steps", "batch_size", "hidden_units"),
        minimums={"eval_samples": 2, "num_blocks": 0},
    )
    return args


def evaluate(samples, reference, seed):
    from keras_gcm.metrics import energy_distance, sliced_wasserstein2

    return {
        "energy_distance": float(energy_distance(samples, reference)),
        "sliced_w2": float(sliced_wasserstein2(samples, reference, seed=seed)),
    }


def plot(path, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (title, points) in zip(axes, panels):
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)
        ax.set_title(title)
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    # Several devices (--devices N): build and compile in this scope.
    distribution_scope = _common.setup_distribution(args)
    import keras

    import keras_gcm
    from keras_gcm import samplers

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if args.precision == "bf16" else "float32"
    )
    out = _common.prepare_output(args.output)
    with distribution_scope:
        network = keras_gcm.networks.MLP(
            hidden_units=args.hidden_units, num_blocks=args.num_blocks,
            time_inputs=keras_gcm.presets.time_inputs(args.preset), seed=args.seed,
        )
        model = keras_gcm.ConsistencyModel.from_preset(
            args.preset, network, ema_decay=args.ema_decay, seed=args.seed
        )
        learning_rate = args.learning_rate
        if args.lr_schedule == "cosine":
            learning_rate = keras.optimizers.schedules.CosineDecay(args.learning_rate, args.steps)
        model.compile(optimizer=keras_gcm.optimizers.RAdam(learning_rate))
        model.build((None, 2))

    # Fresh samples for every step: one epoch of steps * batch points.
    data = keras_gcm.data.toy2d(args.dataset, args.steps * args.batch_size, seed=args.seed)
    reference = keras_gcm.data.toy2d(args.dataset, args.eval_samples, seed=args.seed + 1)
    floor_set = keras_gcm.data.toy2d(args.dataset, args.eval_samples, seed=args.seed + 2)
    untrained = samplers.one_step(model, args.eval_samples, seed=args.seed)

    with _common.Timer() as timer:
        history = model.fit(data, batch_size=args.batch_size, epochs=1, shuffle=False,
                            verbose=args.verbose)
    one = samplers.one_step(model, args.eval_samples, seed=args.seed + 3)
    two = samplers.two_step(model, args.eval_samples, seed=args.seed + 4)
    metrics = {
        "dataset": args.dataset,
        "preset": args.preset,
        "backend": backend,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "devices": args.devices,
        "processes": keras_gcm.distribute.process_count(),
        "precision": args.precision,
        "train_seconds": round(timer.seconds, 2),
        "train_cpu_seconds": round(timer.cpu_seconds, 2),
        "final_loss": float(history.history["loss"][-1]),
        "one_step": evaluate(one, reference, args.seed),
        "two_step": evaluate(two, reference, args.seed),
        "ground_truth_floor": evaluate(floor_set, reference, args.seed),
        "untrained_one_step": evaluate(untrained, reference, args.seed),
    }
    _common.write_json(os.path.join(out, "metrics.json"), metrics)
    if _common.is_chief():
        plot(os.path.join(out, "samples.png"),
             [(f"data ({args.dataset})", reference), ("1-step samples", one),
              ("2-step samples", two)])
    print(
        f"[{backend}] {args.preset} on {args.dataset}: trained {args.steps} steps in "
        f"{timer.seconds:.1f}s | energy distance 1-step {metrics['one_step']['energy_distance']:.4f}, "
        f"2-step {metrics['two_step']['energy_distance']:.4f}, floor "
        f"{metrics['ground_truth_floor']['energy_distance']:.4f}, untrained "
        f"{metrics['untrained_one_step']['energy_distance']:.4f} | wrote {out}"
    )
    return metrics


if __name__ == "__main__":
    main()
