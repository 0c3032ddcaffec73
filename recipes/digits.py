"""Train a consistency model on scikit-learn's 8x8 digits with a small SongUNet (CPU-sized).

    python recipes/digits.py                      # GCM-CU, under 15 minutes on 2 CPU cores
    python recipes/digits.py --preset gcm_vu      # the VU model (two time inputs)

The images are the 1,497-image train split of `keras_gcm.data.digits` (8x8x1,
in [-1, 1]); the network is a small DDPM++-style `SongUNet` (see the
`--model-channels`, `--channel-mult`, `--num-blocks`, `--attn-resolutions`
options); the optimizer is RAdam with an EMA of the weights for sampling.
Training runs with `model.fit` on a seeded, step-indexed batch stream; every
`--log-every` steps the 1-step Frechet digits distance (FDD) of the EMA model
is logged, and every `--grid-every` steps a sample grid is written to
`grids/`. At the end the recipe writes to the output folder:

* `metrics.json`: 1- and 2-step FDD and pixel energy distance against the
  300 held-out digits, for the trained model, the untrained model, and the
  floor (the train split against the held-out split: what the data itself
  scores), plus the training time and the logged curve;
* `samples_1step.png`, `samples_2step.png` (trained model, EMA weights),
  `samples_untrained.png` and `data.png` (held-out digits), 8x8 grids of
  images shown 4x enlarged.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

IMAGE_SHAPE = (8, 8, 1)


def _int_list(text):
    text = str(text).strip()
    return [int(v) for v in text.split(",") if v.strip()] if text else []


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gcm_cu",
                        help="any keras_gcm preset (gcm_cu, gcm_vu, cu_a_baseline, ...)")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--epsilon", type=float, default=None,
                        help="epsilon of the preset's discretisation h(t) (default: the "
                             "preset's own, 0.005 for the exponential step)")
    parser.add_argument("--model-channels", type=int, default=16)
    parser.add_argument("--channel-mult", type=_int_list, default=[1, 2],
                        help="comma-separated channel multipliers per resolution")
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--attn-resolutions", type=_int_list, default=[4],
                        help="comma-separated resolutions with self-attention ('' for none)")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--eval-samples", type=int, default=1497,
                        help="samples per final evaluation (default: the size of the train "
                             "split, so the floor is computed at the same N)")
    parser.add_argument("--log-every", type=int, default=500,
                        help="steps per epoch: the 1-step FDD is logged every this many steps")
    parser.add_argument("--log-samples", type=int, default=500,
                        help="samples of the FDD logged during training")
    parser.add_argument("--grid-every", type=int, default=1000,
                        help="write a sample grid to grids/ every this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/digits")
    parser.add_argument("--verbose", type=int, default=2, help="fit verbosity (0, 1, 2)")
    _common.add_backend_argument(parser)
    _common.add_distribution_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.log_every < 1 or args.grid_every < 1:
        parser.error("--steps, --log-every and --grid-every must be positive.")
    if args.steps % args.log_every:
        parser.error(f"--steps ({args.steps}) must be a multiple of --log-every "
                     f"({args.log_every}).")
    return args


def check_training_images(images, name="training images"):
    """Raises a clear `ValueError` unless `images` is an `(N, *IMAGE_SHAPE)` batch in [-1, 1]."""
    _common.check_training_images(images, IMAGE_SHAPE, name=name)


def build_network(args, time_inputs):
    import keras_gcm

    return keras_gcm.networks.SongUNet(
        img_resolution=IMAGE_SHAPE[0],
        in_channels=IMAGE_SHAPE[2],
        model_channels=args.model_channels,
        channel_mult=args.channel_mult,
        num_blocks=args.num_blocks,
        attn_resolutions=args.attn_resolutions,
        dropout=args.dropout,
        time_inputs=time_inputs,
        seed=args.seed,
    )


def build_model(args):
    """The compiled, built `ConsistencyModel` of the arguments' preset and network."""
    import keras_gcm
    from keras_gcm import presets

    network = build_network(args, presets.time_inputs(args.preset))
    model = keras_gcm.ConsistencyModel.from_preset(
        args.preset, network, **_common.preset_overrides(args))
    model.compile(optimizer=keras_gcm.optimizers.RAdam(args.learning_rate))
    model.build((None,) + IMAGE_SHAPE)
    return model


def evaluate(images):
    from keras_gcm.metrics import digits_quality

    return digits_quality(images, reference="heldout")


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    distribution_scope = _common.setup_distribution(args)
    import numpy as np
    import keras

    import keras_gcm
    from keras_gcm import samplers
    from keras_gcm.callbacks import QualityMetric
    from keras_gcm.callbacks import SampleGrid
    from keras_gcm.data import StepIndexedBatches
    from keras_gcm.utils import save_image_grid
    from keras_gcm.metrics import frechet_digits_distance

    keras.utils.set_random_seed(args.seed)
    out = _common.prepare_output(args.output)
    train = keras_gcm.data.digits("train")
    heldout = keras_gcm.data.digits("heldout")
    check_training_images(train)

    with distribution_scope:
        model = build_model(args)
    num_params = int(model.network.count_params())
    untrained = samplers.one_step(model, args.eval_samples, seed=args.seed + 1)

    data = StepIndexedBatches(train, args.batch_size, seed=args.seed).as_dataset()
    log_fdd = QualityMetric(
        args.log_every, frechet_digits_distance, "fdd_1step",
        num_samples=args.log_samples, seed=args.seed + 5, verbose=0,
    )
    grids = SampleGrid(
        args.grid_every, os.path.join(out, "grids"), num_samples=64, seed=args.seed + 6,
        scale=4, at_train_end=False,
    )
    with _common.Timer() as timer:
        history = model.fit(
            data, steps_per_epoch=args.log_every, epochs=args.steps // args.log_every,
            callbacks=[log_fdd, grids], verbose=args.verbose, shuffle=False,
        )
    with _common.Timer() as eval_timer:
        one = samplers.one_step(model, args.eval_samples, seed=args.seed + 1)
        two = samplers.two_step(model, args.eval_samples, seed=args.seed + 2)
        metrics = {
            "one_step": evaluate(one),
            "two_step": evaluate(two),
            "untrained_one_step": evaluate(untrained),
            "train_split_floor": evaluate(train),
        }
    for name, images in [("samples_1step", one), ("samples_2step", two),
                         ("samples_untrained", untrained), ("data", heldout)]:
        save_image_grid(np.clip(images[:64], -1, 1), os.path.join(out, f"{name}.png"),
                        nrow=8, scale=4)
    curve = [
        {"step": (i + 1) * args.log_every, "loss": float(loss), "fdd_1step": float(fdd)}
        for i, (loss, fdd) in enumerate(zip(history.history["loss"],
                                            history.history["fdd_1step"]))
    ]
    metrics.update({
        "preset": args.preset,
        "backend": backend,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "ema_decay": args.ema_decay,
        "epsilon": float(model.step.epsilon),
        "network": {
            "model_channels": args.model_channels, "channel_mult": args.channel_mult,
            "num_blocks": args.num_blocks, "attn_resolutions": args.attn_resolutions,
            "dropout": args.dropout, "parameters": num_params,
        },
        "seed": args.seed,
        "eval_samples": args.eval_samples,
        "reference": "heldout (300 digits)",
        "train_seconds": round(timer.seconds, 2),
        "eval_seconds": round(eval_timer.seconds, 2),
        "final_loss": float(history.history["loss"][-1]),
        "curve": curve,
        "grids": sorted(os.path.relpath(p, out) for p in grids.paths),
    })
    _common.write_json(os.path.join(out, "metrics.json"), metrics)
    fdd = {k: metrics[k]["frechet_digits_distance"] for k in
           ("one_step", "two_step", "untrained_one_step", "train_split_floor")}
    print(
        f"[{backend}] {args.preset} on digits: trained {args.steps} steps in "
        f"{timer.seconds:.1f}s | FDD 1-step {fdd['one_step']:.2f}, 2-step "
        f"{fdd['two_step']:.2f}, untrained {fdd['untrained_one_step']:.2f}, floor "
        f"{fdd['train_split_floor']:.2f} | pixel ED 1-step "
        f"{metrics['one_step']['pixel_energy_distance']:.3f} | wrote {out}"
    )
    return metrics


if __name__ == "__main__":
    main()
