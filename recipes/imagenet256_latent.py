"""Train VU on latent-space ImageNet-256 with a DiT (Table 6b, appendix G.2).

    python -m keras_gcm.data.encode_latents --vae sd-vae-ft-ema/ \\
        --images imagenet/train --resolution 256 --out latents/in256   # once
    python recipes/imagenet256_latent.py --latents latents/in256 --network b4 \\
        --precision bf16 --vae sd-vae-ft-ema/                           # VU-B/4, 80 epochs
    python recipes/imagenet256_latent.py --latents latents/in256 --network xl2 \\
        --precision bf16 --epochs 40 --vae sd-vae-ft-ema/               # VU-XL/2
    python recipes/imagenet256_latent.py ... --inception-weights pt_inception-2015-12-05-6726825d.pth \\
        --fid-reference imagenet256_fid.npz                             # 1-step FID on decoded samples
    python recipes/imagenet256_latent.py --smoke                        # a few steps on mock latents

The configuration of appendix G.2 (the MeanFlow setting): the presets
`imagenet256_vu_dit_b4` / `imagenet256_vu_dit_xl2` (GCM-VU with epsilon 0.02,
nu 1, Gamma gamma 0.2, the s = t mixture with probability 0.75 and t ~
lognorm(-0.4, 1), MeanFlow's model guidance with label dropout 0.1), DiT-B/4
or DiT-XL/2 on 32x32x4 SD-VAE latents (scaled by 0.18215, sampled from the
stored posterior every step), Adam with learning rate 1e-4 and betas
(0.9, 0.95), batch 256, EMA 0.9999, BF16 (`--precision bf16`), 80 epochs
for B/4 and 40 for XL/2 (1,251 steps per epoch at batch 256).

The latents are read into memory and fed as a step-indexed stream
(`keras_gcm.data.latents.step_indexed_latents`): rerunning the same command
resumes from the latest checkpoint of `<output>/checkpoints` exactly.
With `--vae` (the diffusers `sd-vae-ft-ema` weights) sample grids are
decoded to images; with `--inception-weights` and `--fid-reference` too, the
1-step FID of decoded samples is logged every `--fid-every` steps and
computed on `--final-fid-samples` samples at the end. Missing files are
errors before training starts.
"""

import argparse
import importlib.util
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from cifar10 import PRECISIONS  # noqa: E402
from cifar10 import make_fid_fn  # noqa: E402
from cifar10 import precision_scope  # noqa: E402

NETWORKS = {"b4": "imagenet256_vu_dit_b4", "xl2": "imagenet256_vu_dit_xl2"}
IMAGENET_TRAIN_IMAGES = 1_281_167


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latents", default=None,
                        help="a latent folder written by python -m keras_gcm.data.encode_latents")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="b4",
                        help="DiT-B/4 (b4) or DiT-XL/2 (xl2); selects the preset")
    parser.add_argument("--preset", default=None, help="override the network's preset")
    parser.add_argument("--epochs", type=float, default=None,
                        help="epochs over the latents (default 80 for b4, 40 for xl2)")
    parser.add_argument("--steps", type=int, default=None,
                        help="total optimizer steps (overrides --epochs; 2 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256; 4 with --smoke")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--beta-1", type=float, default=0.9)
    parser.add_argument("--beta-2", type=float, default=0.95)
    parser.add_argument("--ema-decay", type=float, default=0.9999)
    parser.add_argument("--epsilon", type=float, default=None,
                        help="epsilon of h(t) (default: the preset's, 0.02)")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16",
                        help="fp32, tf32 or bf16 (the paper's, default)")
    parser.add_argument("--vae", default=None,
                        help="diffusers sd-vae-ft-ema weights (folder or file) to decode "
                             "grids and FID samples")
    parser.add_argument("--guidance-scale", type=float, default=1.0,
                        help="sampling-time CFG of the grids / FID (1: none; the model "
                             "guidance of training already guides 1-step samples)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="steps per Keras epoch = per log row (default 1000; 1 with --smoke)")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--grid-every", type=int, default=None)
    parser.add_argument("--grid-samples", type=int, default=None)
    parser.add_argument("--inception-weights", default=None)
    parser.add_argument("--fid-reference", default=None)
    parser.add_argument("--fid-every", type=int, default=50_000)
    parser.add_argument("--fid-samples", type=int, default=10_000)
    parser.add_argument("--final-fid-samples", type=int, default=50_000)
    parser.add_argument("--fid-batch-size", type=int, default=250)
    parser.add_argument("--sample-batch-size", type=int, default=250)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--smoke", action="store_true",
                        help="CI check: mock latents, a tiny DiT and VAE, a few steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--verbose", type=int, default=None)
    _common.add_backend_argument(parser)
    _common.add_distribution_arguments(parser)
    args = parser.parse_args(argv)
    smoke = args.smoke
    if args.latents is None and not smoke:
        parser.error("--latents DIR is required (or --smoke for mock latents).")
    args.preset = args.preset or NETWORKS[args.network]
    defaults = {"batch_size": (4, 256), "steps_per_epoch": (1, 1000),
                "checkpoint_every": (1, 10_000), "grid_every": (2, 10_000),
                "grid_samples": (4, 64), "verbose": (0, 1),
                "output": ("runs/imagenet256_smoke", f"runs/imagenet256_{args.network}")}
    for name, (smoke_value, value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke_value if smoke else value)
    if args.steps is None:
        if smoke:
            args.steps = 2
        else:
            epochs = args.epochs or (80 if args.network == "b4" else 40)
            steps = math.ceil(epochs * IMAGENET_TRAIN_IMAGES / args.batch_size)
            args.steps = args.steps_per_epoch * math.ceil(steps / args.steps_per_epoch)
    if args.steps % args.steps_per_epoch:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-epoch "
                     f"({args.steps_per_epoch}).")
    if (args.inception_weights is None) != (args.fid_reference is None):
        parser.error("FID needs both --inception-weights and --fid-reference.")
    if args.inception_weights is not None and args.vae is None and not smoke:
        parser.error("FID is computed on decoded images: pass --vae too.")
    if args.final_fid_samples < 2:  # else the final FID fails only after training
        parser.error("--final-fid-samples must be at least 2 (a covariance needs two samples).")
    return args


def build_network(args, shape, num_classes):
    import keras_gcm

    common = dict(img_resolution=shape[0], in_channels=shape[2], label_dim=num_classes,
                  time_inputs=2, seed=args.seed)
    if args.smoke:
        return keras_gcm.networks.DiT(patch_size=2, hidden_size=32, depth=1, num_heads=2,
                                      **common)
    factory = keras_gcm.networks.DiT.b4 if args.network == "b4" else keras_gcm.networks.DiT.xl2
    return factory(**common)


def build_model(args, shape, num_classes):
    import keras
    import keras_gcm

    network = build_network(args, shape, num_classes)
    model = keras_gcm.ConsistencyModel.from_preset(
        args.preset, network, **_common.preset_overrides(args))
    model.compile(optimizer=keras.optimizers.Adam(
        args.learning_rate, beta_1=args.beta_1, beta_2=args.beta_2))
    model.build((None,) + tuple(shape))
    return model


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    distribution_scope = _common.setup_distribution(args)
    with precision_scope(args.precision, backend):
        return _run(args, backend, distribution_scope)


def _run(args, backend, distribution_scope):
    import keras

    import keras_gcm
    from keras_gcm.callbacks import QualityMetric
    from keras_gcm.callbacks import ResumableCheckpoint
    from keras_gcm.callbacks import SampleGrid
    from keras_gcm.data import latents as latent_data
    from keras_gcm.metrics import fid_inception_v3
    from keras_gcm.metrics import load_statistics

    out = _common.prepare_output(args.output)
    latent_dir = args.latents
    if args.smoke and latent_dir is None:
        latent_dir = os.path.join(out, "mock_latents")
        if not os.path.exists(os.path.join(latent_dir, latent_data.METADATA)):
            latent_data.mock_latents(latent_dir, 16, (8, 8, 4), num_classes=10, seed=args.seed)
    metadata = latent_data.read_metadata(latent_dir)
    num_classes = int(metadata.get("num_classes") or 0)
    if not num_classes:
        raise ValueError(f"{latent_dir!r} has no class labels (num_classes): the Table 6b "
                         "model is class-conditional; encode with --num-classes.")
    # Files first: a missing VAE / Inception / reference file fails before training.
    vae = None
    if args.vae is not None:
        vae = keras_gcm.networks.AutoencoderKL.from_diffusers(args.vae)
    elif args.smoke:
        vae = keras_gcm.networks.AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1,
                                               norm_num_groups=4)
        vae.build()
    fid_fn = None
    if args.inception_weights is not None:
        fid_fn = make_fid_fn(fid_inception_v3(args.inception_weights),
                             load_statistics(args.fid_reference), args.fid_batch_size)

    keras.utils.set_random_seed(args.seed)
    shape = tuple(metadata["shape"])
    with distribution_scope:
        model = build_model(args, shape, num_classes)
    latent_data.check_latent_shape(latent_dir, model.network)
    checkpoint_dir = os.path.join(out, "checkpoints")
    if not args.resume and ResumableCheckpoint.read_index(checkpoint_dir) is not None:
        raise ValueError(f"{checkpoint_dir} holds a checkpoint and --no-resume was given: "
                         "choose another --output or delete the folder.")
    start = ResumableCheckpoint.latest_step(checkpoint_dir)
    data = latent_data.step_indexed_latents(latent_dir, args.batch_size, seed=args.seed,
                                            start_step=start).as_dataset()

    callbacks = [ResumableCheckpoint(checkpoint_dir, every_n_steps=args.checkpoint_every,
                                     verbose=0 if args.smoke else 1)]
    sampler = None
    grid_callbacks = []
    if vae is not None:
        sampler = keras_gcm.samplers.decoded(vae, num_classes=num_classes,
                                             guidance_scale=args.guidance_scale)
        grid_callbacks.append(SampleGrid(
            args.grid_every, os.path.join(out, "grids"), num_samples=args.grid_samples,
            seed=args.seed + 2, sampler=sampler, batch_size=args.sample_batch_size))
        if fid_fn is not None:
            callbacks.append(QualityMetric(
                args.fid_every, fid_fn, "fid_one_step", num_samples=args.fid_samples,
                seed=args.seed + 1, sampler=sampler, batch_size=args.sample_batch_size))
    callbacks += grid_callbacks
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=True))
    if importlib.util.find_spec("tensorboard") is not None and not args.smoke:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"),
                                                     write_graph=False))
    history = None
    with _common.Timer() as timer:
        if start < args.steps:
            history = model.fit(data, steps_per_epoch=args.steps_per_epoch,
                                epochs=args.steps // args.steps_per_epoch,
                                initial_epoch=start // args.steps_per_epoch,
                                callbacks=callbacks, verbose=args.verbose, shuffle=False)
        else:
            ResumableCheckpoint(checkpoint_dir, verbose=0).restore(model)
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    metrics = {
        "preset": args.preset, "network": args.network, "backend": backend,
        "precision": args.precision, "smoke": args.smoke, "steps": step,
        "resumed_from_step": start, "batch_size": args.batch_size,
        "latent_shape": list(shape), "num_classes": num_classes,
        "parameters": int(model.network.count_params()),
        "train_seconds": round(timer.seconds, 2),
        "final_loss": float(history.history["loss"][-1]) if history is not None else None,
        "grids": sorted(os.path.relpath(p, out) for c in grid_callbacks for p in c.paths),
    }
    if fid_fn is not None and sampler is not None:
        metrics["fid_one_step"] = fid_fn(sampler(model, args.final_fid_samples,
                                                 seed=args.seed + 3,
                                                 batch_size=args.sample_batch_size))
    if args.save_model:
        path = os.path.join(out, "model.keras")
        model.save(path)
        metrics["model"] = os.path.relpath(path, out)
    _common.write_json(os.path.join(out, "metrics.json"), metrics)
    print(f"[{backend}] {args.preset}{' (smoke)' if args.smoke else ''}: step {step} in "
          f"{timer.seconds:.1f}s | wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
