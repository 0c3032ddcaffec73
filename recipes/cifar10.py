"""Train a consistency model on CIFAR-10 with the paper's configuration (appendix G.1).

    python recipes/cifar10.py                                # GCM-CU, batch 512, 400K iterations
    python recipes/cifar10.py --preset gcm_vu --batch-size 1024
    python recipes/cifar10.py --inception-weights pt_inception-2015-12-05-6726825d.pth \\
        --fid-reference cifar10_train_fid.npz                # FID during training
    python recipes/cifar10.py --smoke                        # a few steps on mock data (CI)

The configuration of appendix G.1: EDM's DDPM++ network (`SongUNet.ddpmpp`,
dropout 0.2), RAdam with learning rate 1e-4, betas (0.9, 0.999), eps 1e-8,
an EMA of the weights with decay 0.9999 for sampling, batch 512 (1024 for the
paper's headline numbers, where it also turns on EDM's augmentation, which
this recipe does not implement), 400K iterations, horizontal flips, TF32
matmuls. `--preset` picks the CU (`gcm_cu`) or VU (`gcm_vu`) model, or any
other preset.

CIFAR-10 comes from `tensorflow-datasets` (downloaded on first use unless
`--data-dir` holds it) and is kept in memory as uint8; the batches come from
a seeded, step-indexed stream (`keras_gcm.data.StepIndexedBatches`), so a
stopped run resumes exactly where it stopped: rerun the same command and it
restores the latest checkpoint of `<output>/checkpoints` (weights, EMA,
optimizer, step, random states) and continues the same trajectory.

Written to the output folder: `log.csv` (one row per `--steps-per-epoch`
steps: loss, mean h, FIDs when computed), TensorBoard logs in `tensorboard/`
(losses need the `tensorboard` package; sample grids and FIDs are written
without it), sample grids in `grids/`, checkpoints in `checkpoints/`, the
final model `model.keras` and `metrics.json`.

FID: with `--inception-weights` (the PyTorch FID Inception file) and
`--fid-reference` (an `.npz` of the reference `mu` / `sigma`, e.g. computed
with `keras_gcm.metrics.compute_statistics` on the training set), the 1- and
2-step FIDs of `--fid-samples` samples are logged every `--fid-every` steps and
computed on `--final-fid-samples` samples at the end. A missing file is an
error before training starts.
"""

import argparse
import contextlib
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

IMAGE_SHAPE = (32, 32, 3)
PRECISIONS = ("fp32", "tf32", "bf16")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gcm_cu",
                        help="any keras_gcm preset: gcm_cu (CU), gcm_vu (VU), ...")
    parser.add_argument("--steps", type=int, default=None,
                        help="total optimizer steps (default 400000; 2 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 512 (the paper's headline uses 1024); 4 with --smoke")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--beta-1", type=float, default=0.9)
    parser.add_argument("--beta-2", type=float, default=0.999)
    parser.add_argument("--adam-epsilon", type=float, default=1e-8)
    parser.add_argument("--ema-decay", type=float, default=0.9999)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epsilon", type=float, default=None,
                        help="epsilon of the preset's h(t) (default: the preset's, 0.005; "
                             "0.02 with --precision bf16, as the paper's BF16 run)")
    parser.add_argument("--xflip", action=argparse.BooleanOptionalAction, default=True,
                        help="random horizontal flips (default on)")
    parser.add_argument("--precision", choices=PRECISIONS, default="tf32",
                        help="fp32, tf32 (the paper's; TF32 matmuls / convolutions on "
                             "NVIDIA GPUs) or bf16 (mixed_bfloat16)")
    parser.add_argument("--split", default="train", help="TFDS split to train on")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="steps per Keras epoch = per log row (default 1000; 1 with "
                             "--smoke); checkpoints, grids and FIDs fall on epoch ends")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="steps between checkpoints (default 10000; every epoch with "
                             "--smoke)")
    parser.add_argument("--grid-every", type=int, default=None,
                        help="steps between sample grids (default 10000)")
    parser.add_argument("--grid-samples", type=int, default=64)
    parser.add_argument("--grid-samplers", default=None,
                        help="comma-separated samplers of the grids: one_step, two_step "
                             "(default both; one_step with --smoke)")
    parser.add_argument("--inception-weights", default=None,
                        help="the PyTorch FID Inception weights "
                             "(pt_inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--fid-reference", default=None,
                        help=".npz with the reference FID statistics (mu, sigma)")
    parser.add_argument("--fid-every", type=int, default=50000)
    parser.add_argument("--fid-samples", type=int, default=10000)
    parser.add_argument("--final-fid-samples", type=int, default=50000)
    parser.add_argument("--fid-batch-size", type=int, default=250)
    parser.add_argument("--sample-batch-size", type=int, default=500)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="resume from <output>/checkpoints when it holds a checkpoint")
    parser.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True,
                        help="save the final model as <output>/model.keras")
    parser.add_argument("--smoke", action="store_true",
                        help="CI check: a tiny SongUNet, a tiny batch and a few steps on "
                             "tfds.testing.mock_data (no download)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None,
                        help="output folder (default runs/cifar10, runs/cifar10_smoke)")
    parser.add_argument("--verbose", type=int, default=None,
                        help="fit verbosity (default 1; 0 with --smoke)")
    _common.add_backend_argument(parser)
    _common.add_distribution_arguments(parser)
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "steps": (2, 400_000), "batch_size": (4, 512), "steps_per_epoch": (1, 1000),
        "checkpoint_every": (1, 10_000), "grid_every": (2, 10_000), "verbose": (0, 1),
        "output": ("runs/cifar10_smoke", "runs/cifar10"),
        "grid_samplers": ("one_step", "one_step,two_step"),
    }
    for name, (smoke_value, value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke_value if smoke else value)
    if smoke and args.grid_samples == 64:
        args.grid_samples = 16
    args.grid_samplers = [name.strip() for name in args.grid_samplers.split(",") if name.strip()]
    for name in args.grid_samplers:
        if name not in ("one_step", "two_step"):
            parser.error(f"--grid-samplers: unknown sampler {name!r} (one_step, two_step).")
    for name in ("steps", "batch_size", "steps_per_epoch", "checkpoint_every", "grid_every",
                 "fid_every", "fid_samples", "final_fid_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive.")
    if args.steps % args.steps_per_epoch:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-epoch "
                     f"({args.steps_per_epoch}): a run stops and resumes at epoch ends.")
    if args.precision == "bf16" and args.epsilon is None:
        # bf16 outputs carry ~3 significant digits: the finite-difference loss
        # needs a larger h(t); the paper uses epsilon 0.02 with BF16 (G.2).
        from keras_gcm.consistency_model import LOW_PRECISION_MIN_EPSILON

        args.epsilon = LOW_PRECISION_MIN_EPSILON
    if (args.inception_weights is None) != (args.fid_reference is None):
        parser.error("FID needs both --inception-weights and --fid-reference.")
    return args


# ----------------------------------------------------------------- precision
@contextlib.contextmanager
def precision_scope(precision, backend):
    """Sets the matmul / convolution precision and dtype policy; restores them after.

    fp32: full float32 matmuls and convolutions (TF32 off). tf32: TF32 on
    (JAX `jax_default_matmul_precision="tensorfloat32"`, torch
    `allow_tf32`, TensorFlow `enable_tensor_float_32_execution`; only NVIDIA
    Ampere and newer GPUs use it). bf16: the `mixed_bfloat16` Keras policy
    (float32 variables, bfloat16 computation), TF32 for what stays float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; got {precision!r}.")
    import keras

    tf32 = precision != "fp32"
    restore = []
    if backend == "jax":
        import jax

        previous = jax.config.jax_default_matmul_precision
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "float32")
        restore.append(lambda: jax.config.update("jax_default_matmul_precision", previous))
    elif backend == "torch":
        import torch

        previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

        def undo():
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous

        restore.append(undo)
    elif backend == "tensorflow":
        import tensorflow as tf

        previous = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
        restore.append(lambda: tf.config.experimental.enable_tensor_float_32_execution(previous))
    previous_policy = keras.config.dtype_policy()
    if precision == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    restore.append(lambda: keras.config.set_dtype_policy(previous_policy))
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()


# ---------------------------------------------------------------------- data
def check_training_images(images, name="training images"):
    """Raises a clear `ValueError` unless `images` is an `(N, *IMAGE_SHAPE)` batch in [-1, 1]."""
    _common.check_training_images(images, IMAGE_SHAPE, name=name)


def load_cifar10_uint8(split="train", data_dir=None):
    """The CIFAR-10 split as a uint8 `(N, 32, 32, 3)` numpy array (through TFDS)."""
    import numpy as np
    import tensorflow_datasets as tfds

    dataset = tfds.load("cifar10", split=split, data_dir=data_dir, shuffle_files=False)
    dataset = dataset.map(lambda example: example["image"]).batch(10_000)
    images = np.concatenate(list(tfds.as_numpy(dataset)), axis=0)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"Unexpected CIFAR-10 images: {images.dtype} {images.shape}.")
    return images


@contextlib.contextmanager
def _maybe_mock_data(smoke, num_examples=64):
    if not smoke:
        yield
        return
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=num_examples):
        yield


# --------------------------------------------------------------------- model
def build_network(args, time_inputs):
    import keras_gcm

    if args.smoke:
        return keras_gcm.networks.SongUNet(
            img_resolution=IMAGE_SHAPE[0], in_channels=IMAGE_SHAPE[2], model_channels=8,
            channel_mult=[1], num_blocks=1, attn_resolutions=[], dropout=args.dropout,
            time_inputs=time_inputs, seed=args.seed,
        )
    return keras_gcm.networks.SongUNet.ddpmpp(
        img_resolution=IMAGE_SHAPE[0], in_channels=IMAGE_SHAPE[2], dropout=args.dropout,
        time_inputs=time_inputs, seed=args.seed,
    )


def build_model(args):
    """The compiled, built `ConsistencyModel` (DDPM++ and RAdam of appendix G.1)."""
    import keras_gcm
    from keras_gcm import presets

    network = build_network(args, presets.time_inputs(args.preset))
    model = keras_gcm.ConsistencyModel.from_preset(
        args.preset, network, **_common.preset_overrides(args))
    model.compile(optimizer=keras_gcm.optimizers.RAdam(
        args.learning_rate, beta_1=args.beta_1, beta_2=args.beta_2,
        epsilon=args.adam_epsilon,
    ))
    model.build((None,) + IMAGE_SHAPE)
    return model


def make_fid_fn(inception, reference, batch_size):
    """`samples -> FID` against the reference statistics (samples clipped to [-1, 1])."""
    import numpy as np

    from keras_gcm.metrics import FrechetInceptionDistance

    def fid(samples):
        metric = FrechetInceptionDistance(inception)
        metric.update_from_dataset(np.clip(samples, -1.0, 1.0), batch_size=batch_size,
                                   progress=False)
        return float(metric.result(reference))

    return fid


# ---------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    distribution_scope = _common.setup_distribution(args)
    with precision_scope(args.precision, backend):
        return _run(args, backend, distribution_scope)


def _run(args, backend, distribution_scope):
    import numpy as np
    import keras

    from keras_gcm import samplers
    from keras_gcm.callbacks import QualityMetric
    from keras_gcm.callbacks import ResumableCheckpoint
    from keras_gcm.callbacks import SampleGrid
    from keras_gcm.data import StepIndexedBatches
    from keras_gcm.metrics import fid_inception_v3
    from keras_gcm.metrics import load_statistics

    out = _common.prepare_output(args.output)
    # Files first: a missing Inception / reference file fails before any training.
    fid_fn = None
    if args.inception_weights is not None:
        reference = load_statistics(args.fid_reference)
        inception = fid_inception_v3(args.inception_weights)
        fid_fn = make_fid_fn(inception, reference, args.fid_batch_size)

    keras.utils.set_random_seed(args.seed)
    with _maybe_mock_data(args.smoke):
        images = load_cifar10_uint8(args.split, args.data_dir)
    check_training_images(images[:1024].astype(np.float32) / 127.5 - 1.0)

    with distribution_scope:
        model = build_model(args)
    checkpoint_dir = os.path.join(out, "checkpoints")
    if not args.resume and ResumableCheckpoint.read_index(checkpoint_dir) is not None:
        raise ValueError(
            f"{checkpoint_dir} holds a checkpoint and --no-resume was given: choose "
            "another --output or delete the folder."
        )
    start = ResumableCheckpoint.latest_step(checkpoint_dir)
    if start % args.steps_per_epoch:
        raise ValueError(
            f"The checkpoint in {checkpoint_dir} is at step {start}, not a multiple of "
            f"--steps-per-epoch {args.steps_per_epoch}: resume with the original value."
        )
    data = StepIndexedBatches(
        images, args.batch_size, seed=args.seed, start_step=start, xflip=args.xflip,
    ).as_dataset()

    log_dir = os.path.join(out, "tensorboard")
    callbacks = [ResumableCheckpoint(checkpoint_dir, every_n_steps=args.checkpoint_every,
                                     verbose=0 if args.smoke else 1)]
    if fid_fn is not None:
        for sampler in ("one_step", "two_step"):
            callbacks.append(QualityMetric(
                args.fid_every, fid_fn, f"fid_{sampler}", num_samples=args.fid_samples,
                seed=args.seed + 1, sampler=sampler, batch_size=args.sample_batch_size,
                log_dir=log_dir,
            ))
    grid_callbacks = [
        SampleGrid(args.grid_every, os.path.join(out, "grids"), num_samples=args.grid_samples,
                   seed=args.seed + 2, sampler=sampler, log_dir=log_dir,
                   batch_size=args.sample_batch_size)
        for sampler in args.grid_samplers
    ]
    callbacks += grid_callbacks
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=True))
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir, write_graph=False))
    elif not args.smoke:
        print("Note: `pip install tensorboard` for TensorBoard loss curves (sample grids "
              "and FIDs are written to TensorBoard without it).")

    epochs = args.steps // args.steps_per_epoch
    history = None
    with _common.Timer() as timer:
        if start < args.steps:
            history = model.fit(
                data, steps_per_epoch=args.steps_per_epoch, epochs=epochs,
                initial_epoch=start // args.steps_per_epoch, callbacks=callbacks,
                verbose=args.verbose, shuffle=False,
            )
        else:
            print(f"{checkpoint_dir} is already at step {start} >= --steps {args.steps}.")
            ResumableCheckpoint(checkpoint_dir, verbose=0).restore(model)
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    trained = step - start

    metrics = {
        "preset": args.preset,
        "backend": backend,
        "precision": args.precision,
        "smoke": args.smoke,
        "steps": step,
        "resumed_from_step": start,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "ema_decay": args.ema_decay,
        "dropout": args.dropout,
        "xflip": args.xflip,
        "epsilon": float(model.step.epsilon),
        "parameters": int(model.network.count_params()),
        "train_seconds": round(timer.seconds, 2),
        "images_per_second": round(trained * args.batch_size / max(timer.seconds, 1e-9), 2),
        "final_loss": float(history.history["loss"][-1]) if history is not None else None,
        "grids": sorted(os.path.relpath(p, out) for c in grid_callbacks for p in c.paths),
    }
    if fid_fn is not None:
        for sampler, draw in (("one_step", samplers.one_step),
                              ("two_step", samplers.two_step)):
            samples = draw(model, args.final_fid_samples, seed=args.seed + 3,
                           batch_size=args.sample_batch_size)
            metrics[f"fid_{sampler}"] = fid_fn(samples)
        metrics["fid_samples"] = args.final_fid_samples
    if args.save_model:
        path = os.path.join(out, "model.keras")
        model.save(path)
        metrics["model"] = os.path.relpath(path, out)
    _common.write_json(os.path.join(out, "metrics.json"), metrics)
    fids = "".join(f", {k} {metrics[k]:.3f}" for k in ("fid_one_step", "fid_two_step")
                   if k in metrics)
    print(f"[{backend}] {args.preset} on CIFAR-10{' (smoke)' if args.smoke else ''}: step "
          f"{step} (trained {trained} in {timer.seconds:.1f}s{fids}) | wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
