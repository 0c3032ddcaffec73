"""Fine-tune a pretrained EDM2 diffusion model into a CU consistency model on ImageNet-64 (Table 6a).

    python recipes/imagenet64.py --network edm2-s --init edm2-img64-s.pt
    python recipes/imagenet64.py --network edm2-xl --init edm2-img64-xl.pt \\
        --inception-weights pt_inception-2015-12-05-6726825d.pth \\
        --fid-reference imagenet64_fid.npz --fid-every 10000
    python recipes/imagenet64.py --smoke          # a few steps on mock data (CI)

The configuration of appendix G.2 (ECT's ImageNet-64 setting, locuslab/ect
branch `imgnet`, with the paper's two changes): the `imagenet64_cu_finetune`
preset (GCM-CU with ECT's discretisation and curriculum over 100K
iterations, Gamma weight `t exp(-3 t)`, uniform t), EDM2's network
(`EDM2UNet.img64`) initialised from the EDM2 checkpoint and wrapped in
`EDMDenoiserVelocity` (EDM's denoiser -> flow-matching velocity), batch 128,
Adam with ECT's learning rate (1e-3 / 9e-4 / 8e-4 / 7e-4 for S / M / L /
XL), betas (0.9, 0.99), inverse-sqrt decay after 2000 iterations, dropout
0.4 (S) or 0.5 at resolutions <= 16, EMA decay 0.9999, class-conditional.

`--init` takes a PyTorch state dict of EDM2's `Precond` (save one with
`torch.save(pickle.load(f)["ema"].state_dict(), "edm2-img64-s.pt")` in
EDM2's environment) or the same arrays in an `.npz`; without it the
network starts from EDM2's random initialisation (training from scratch,
which the 100K-iteration setting is not made for).

Data: TFDS `imagenet_resized/64x64` (prepared under `--data-dir`; TFDS cannot
download ImageNet), with `--npz-files`, the Downsampled-ImageNet batch
files, or, with `--image-folder DIR`, a folder of images with one subfolder
per class (streamed by `keras_gcm.data.image_folder(labels=True)`; class ids
are the sorted subfolder names, e.g. ImageNet's WordNet ids, and there must be
as many subfolders as the network's `label_dim`, 1000; `--smoke` sizes its
tiny network to the folder's classes). A stopped run resumes from
`<output>/checkpoints` (weights, EMA,
optimizer, step, random states); the data stream restarts with a seed
derived from the step.

FID: with `--inception-weights` and `--fid-reference` (`.npz` of `mu`,
`sigma`), 1- and 2-step FIDs of `--fid-samples` class-conditional samples
(uniformly drawn classes) every `--fid-every` steps.
"""

import argparse
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

IMAGE_SHAPE = (64, 64, 3)
NETWORKS = ("edm2-s", "edm2-m", "edm2-l", "edm2-xl")
# ECT's ImageNet-64 presets (ct_train.py, branch imgnet): learning rate and dropout.
ECT_SETTINGS = {
    "edm2-s": dict(learning_rate=1e-3, dropout=0.40),
    "edm2-m": dict(learning_rate=9e-4, dropout=0.50),
    "edm2-l": dict(learning_rate=8e-4, dropout=0.50),
    "edm2-xl": dict(learning_rate=7e-4, dropout=0.50),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", choices=NETWORKS, default="edm2-s")
    parser.add_argument("--init", default=None,
                        help="EDM2 checkpoint (.pt state dict or .npz) to fine-tune")
    parser.add_argument("--preset", default="imagenet64_cu_finetune")
    parser.add_argument("--steps", type=int, default=None, help="default 100000 (2 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (4 with --smoke)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default ECT's for the network (1e-3 for edm2-s)")
    parser.add_argument("--lr-ref-steps", type=int, default=2000,
                        help="inverse-sqrt decay after this many steps (0: constant)")
    parser.add_argument("--beta-1", type=float, default=0.9)
    parser.add_argument("--beta-2", type=float, default=0.99)
    parser.add_argument("--ema-decay", type=float, default=0.9999)
    parser.add_argument("--dropout", type=float, default=None,
                        help="default ECT's (0.4 for edm2-s, 0.5 otherwise)")
    parser.add_argument("--dropout-max-resolution", type=int, default=16)
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument("--split", default="train")
    parser.add_argument("--npz-files", nargs="*", default=None,
                        help="Downsampled-ImageNet batch files instead of TFDS")
    parser.add_argument("--image-folder", default=None,
                        help="a folder with one subfolder of images per class (sorted names "
                             "= class ids) instead of TFDS")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="steps per log row (default 1000; 1 with --smoke)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="default 5000 (every epoch with --smoke)")
    parser.add_argument("--grid-every", type=int, default=None, help="default 10000")
    parser.add_argument("--grid-samples", type=int, default=64)
    parser.add_argument("--inception-weights", default=None)
    parser.add_argument("--fid-reference", default=None)
    parser.add_argument("--fid-every", type=int, default=10000)
    parser.add_argument("--fid-samples", type=int, default=10000)
    parser.add_argument("--fid-batch-size", type=int, default=250)
    parser.add_argument("--sample-batch-size", type=int, default=250)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--smoke", action="store_true",
                        help="CI check: a tiny EDM2UNet, a tiny batch and a few steps on "
                             "tfds.testing.mock_data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--verbose", type=int, default=None)
    _common.add_backend_argument(parser)
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "steps": (2, 100_000), "batch_size": (4, 128), "steps_per_epoch": (1, 1000),
        "checkpoint_every": (1, 5000), "grid_every": (2, 10_000), "verbose": (0, 1),
        "output": ("runs/imagenet64_smoke", "runs/imagenet64"),
    }
    for name, (smoke_value, value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke_value if smoke else value)
    for name, value in ECT_SETTINGS[args.network].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if smoke and args.grid_samples == 64:
        args.grid_samples = 4
    for name in ("steps", "batch_size", "steps_per_epoch", "checkpoint_every", "grid_every",
                 "fid_every", "fid_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive.")
    if args.steps % args.steps_per_epoch:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-epoch "
                     f"({args.steps_per_epoch}): a run stops and resumes at epoch ends.")
    if args.image_folder is not None and args.npz_files:
        parser.error("Give one data source: --image-folder or --npz-files.")
    if args.image_folder is not None and not os.path.isdir(args.image_folder):
        parser.error(f"--image-folder: {args.image_folder!r} is not a folder.")
    if (args.inception_weights is None) != (args.fid_reference is None):
        parser.error("FID needs both --inception-weights and --fid-reference.")
    if args.init is not None and not os.path.isfile(args.init):
        parser.error(f"--init: no checkpoint file {args.init!r}.")
    return args


def smoke_network_config(label_dim=1000):
    """The tiny EDM2UNet of `--smoke` (and of the tests' checkpoints)."""
    return dict(img_resolution=64, in_channels=3, label_dim=label_dim, model_channels=8,
                channel_mult=[1, 1], num_blocks=1, attn_resolutions=[],
                channels_per_head=8)


def build_model(args):
    """The compiled, built `ConsistencyModel` around the (pretrained) EDM2 network."""
    import keras

    import keras_gcm
    from keras_gcm import presets

    dropout = dict(dropout=args.dropout, dropout_max_resolution=args.dropout_max_resolution,
                   seed=args.seed)
    classes = (keras_gcm.data.image_folder_classes(args.image_folder)
               if args.image_folder else None)
    if args.smoke:
        edm2 = keras_gcm.networks.EDM2UNet(
            **smoke_network_config(len(classes) if classes else 1000), **dropout)
    else:
        edm2 = keras_gcm.networks.EDM2UNet.img64(args.network.split("-")[1], **dropout)
    if classes and len(classes) != edm2.label_dim:
        raise ValueError(
            f"--image-folder {args.image_folder!r} has {len(classes)} class subfolders but "
            f"the {args.network} network is conditioned on label_dim={edm2.label_dim} "
            f"classes: give one subfolder per class ({edm2.label_dim}, sorted names = "
            "class ids, e.g. ImageNet's WordNet ids n01440764 ...).")
    if args.init is not None:
        keras_gcm.networks.load_edm2_checkpoint(edm2, args.init)
    parts = presets.components(args.preset)
    network = keras_gcm.networks.EDMDenoiserVelocity(
        edm2, sigma_data=0.5, interpolant=parts.get("interpolant"),
        conditioning=parts.get("conditioning"),
    )
    model = keras_gcm.ConsistencyModel.from_preset(
        args.preset, network, **_common.preset_overrides(args))
    schedule = keras_gcm.optimizers.InverseSqrtDecay(args.learning_rate, args.lr_ref_steps)
    model.compile(optimizer=keras.optimizers.Adam(
        schedule, beta_1=args.beta_1, beta_2=args.beta_2, epsilon=1e-8))
    model.build((None,) + IMAGE_SHAPE)
    return model


def load_data(args, seed):
    import keras_gcm

    if args.image_folder:
        return keras_gcm.data.image_folder(args.image_folder, IMAGE_SHAPE[:2], args.batch_size,
                                           seed=seed, labels=True)
    if args.npz_files:
        return keras_gcm.data.imagenet64_npz(args.npz_files, batch_size=args.batch_size,
                                             seed=seed)
    return keras_gcm.data.imagenet64(args.split, batch_size=args.batch_size, seed=seed,
                                     data_dir=args.data_dir)


def conditional_sampler(kind, num_classes):
    """A `keras_gcm.callbacks` sampler drawing uniformly random classes."""
    import numpy as np

    from keras_gcm import samplers

    draw = samplers.one_step if kind == "one_step" else samplers.two_step

    def sample(model, num_samples, seed=0, batch_size=256):
        labels = np.random.default_rng(seed).integers(0, num_classes, size=num_samples)
        return draw(model, num_samples, seed=seed, batch_size=batch_size,
                    class_labels=labels.astype("int32"))

    return sample


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    import contextlib

    import keras

    from keras_gcm.callbacks import QualityMetric
    from keras_gcm.callbacks import ResumableCheckpoint
    from keras_gcm.callbacks import SampleGrid

    out = _common.prepare_output(args.output)
    fid_fn = None
    if args.inception_weights is not None:
        from keras_gcm.metrics import fid_inception_v3
        from keras_gcm.metrics import load_statistics

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import cifar10  # noqa: F401  (make_fid_fn is shared)

        reference = load_statistics(args.fid_reference)
        fid_fn = cifar10.make_fid_fn(fid_inception_v3(args.inception_weights), reference,
                                     args.fid_batch_size)
    keras.utils.set_random_seed(args.seed)
    model = build_model(args)
    checkpoint_dir = os.path.join(out, "checkpoints")
    start = ResumableCheckpoint.latest_step(checkpoint_dir)
    if start and not args.resume:
        raise ValueError(f"{checkpoint_dir} holds a checkpoint and --no-resume was given: "
                         "choose another --output or delete the folder.")
    if start % args.steps_per_epoch:
        raise ValueError(f"The checkpoint in {checkpoint_dir} is at step {start}, not a "
                         f"multiple of --steps-per-epoch {args.steps_per_epoch}.")
    mock = contextlib.nullcontext()
    if args.smoke and not args.npz_files and not args.image_folder:
        import tensorflow_datasets as tfds

        mock = tfds.testing.mock_data(num_examples=16)
    num_classes = model.network.label_dim
    log_dir = os.path.join(out, "tensorboard")
    callbacks = [ResumableCheckpoint(checkpoint_dir, every_n_steps=args.checkpoint_every,
                                     verbose=0 if args.smoke else 1)]
    if fid_fn is not None:
        for kind in ("one_step", "two_step"):
            callbacks.append(QualityMetric(
                args.fid_every, fid_fn, f"fid_{kind}", num_samples=args.fid_samples,
                seed=args.seed + 1, sampler=conditional_sampler(kind, num_classes),
                batch_size=args.sample_batch_size, log_dir=log_dir))
    grid = SampleGrid(args.grid_every, os.path.join(out, "grids"),
                      num_samples=args.grid_samples, seed=args.seed + 2,
                      sampler=conditional_sampler("one_step", num_classes),
                      log_dir=log_dir, batch_size=args.sample_batch_size)
    callbacks.append(grid)
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=True))
    if importlib.util.find_spec("tensorboard") is not None and not args.smoke:
        callbacks.append(keras.callbacks.TensorBoard(log_dir, write_graph=False))
    history = None
    with _common.Timer() as timer, mock:
        data = load_data(args, seed=args.seed + start)
        if start < args.steps:
            history = model.fit(
                data, steps_per_epoch=args.steps_per_epoch,
                epochs=args.steps // args.steps_per_epoch,
                initial_epoch=start // args.steps_per_epoch, callbacks=callbacks,
                verbose=args.verbose)
        else:
            print(f"{checkpoint_dir} is already at step {start} >= --steps {args.steps}.")
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    metrics = {
        "preset": args.preset, "network": args.network, "init": args.init,
        "backend": backend, "smoke": args.smoke, "steps": step, "resumed_from_step": start,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "dropout": args.dropout, "ema_decay": args.ema_decay,
        "edm2_parameters": model.network.network.count_edm2_parameters(),
        "train_seconds": round(timer.seconds, 2),
        "final_loss": float(history.history["loss"][-1]) if history is not None else None,
        "grids": sorted(os.path.relpath(p, out) for p in grid.paths),
    }
    for kind in ("one_step", "two_step"):
        for callback in callbacks:
            if isinstance(callback, QualityMetric) and callback.name == f"fid_{kind}":
                if callback.values:
                    metrics[f"fid_{kind}"] = callback.values[-1][1][callback.name]
    _common.write_json(os.path.join(out, "metrics.json"), metrics)
    print(f"[{backend}] {args.preset} from {args.init or 'scratch'} ({args.network}"
          f"{', smoke' if args.smoke else ''}): step {step} in {timer.seconds:.1f}s | wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
