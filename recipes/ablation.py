"""Rerun the paper's ablation tables at small scale: presets x seeds on one data set.

    python recipes/ablation.py                                  # Tables 2 + 3 on two moons
    python recipes/ablation.py --dataset checkerboard --seeds 0 1 2
    python recipes/ablation.py --dataset digits --presets 'cu_*' gcm_cu --steps 1500
    python recipes/ablation.py --presets 't7b_*' --output runs/ablation_7b

Every preset is trained with the same seed(s), steps, batch size, optimizer and
network (a residual MLP for the 2-D sets; for 8x8 digits the small `SongUNet`
of `recipes/digits.py`, without attention or dropout to fit the CPU budget),
then sampled with 1 and 2 steps (restart for CU rows, pushforward for VU rows,
t1 = 0.6) and measured against fresh data:

* 2-D sets (`checkerboard`, `eight_gaussians`, `two_moons`, `swiss_roll`,
  `rings`, `pinwheel`): energy distance and sliced Wasserstein-2 to
  `--eval-samples` fresh ground-truth points;
* `digits`: Frechet digits distance (FID's formula in the features of a small
  digit classifier) and pixel energy distance to the 300 held-out digits.

Lower is better for all four. The output folder receives:

* `runs/<preset>__seed<k>.json`: one file per run (settings, timings, metrics),
  and `runs/<preset>__seed<k>_samples.npz` its 1-step samples; an existing run
  with the same settings is reused, so an interrupted ablation resumes where
  it stopped;
* `runs.json`: every run; `summary.json`: mean and spread per preset;
* `table.md`: a markdown table, mean +- standard deviation across seeds (the
  sample standard deviation, n - 1), with the command that produced it and,
  for reference, the paper's CIFAR-10 FIDs of the same table cell; then the
  change of the primary figure from the row each preset builds on (A -> B,
  ..., a Table 7 variant from its base row), paired by seed;
* `ablation.png`: the 1- and 2-step figures per preset with their spread;
* `samples.png`: 1-step samples of every preset (first seed).

The epsilon-halving curriculum of Table 7d halves every 50K of the paper's 400K
iterations; here its `halve_every` is scaled by `steps / 400000` (the same
number of halvings in a shorter run) unless `--no-scale-curriculum` is given.
"""

import argparse
import os
import shlex
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TABLES_2_AND_3 = ["cu_a_baseline", "cu_b", "cu_c", "cu_d", "cu_e", "gcm_cu",
                  "vu_g_baseline", "vu_h", "vu_i", "vu_j", "vu_k", "gcm_vu"]
PAPER_ITERATIONS = 400_000

# The row each preset changes one module of (Tables 2 and 3 are cumulative; a
# Table 7 variant changes its base row). Used for the paired "change" table.
BASE_ROW = {
    "cu_b": "cu_a_baseline", "cu_c": "cu_b", "cu_d": "cu_c", "cu_e": "cu_d",
    "gcm_cu": "cu_e", "vu_g_baseline": "cu_a_baseline", "vu_h": "vu_g_baseline",
    "vu_i": "vu_h", "vu_j": "vu_i", "vu_k": "vu_j", "gcm_vu": "vu_k",
    "ect_like": "cu_d", "imm_like": "cu_d",
}
for _prefix, _base in (("t7b_", "cu_d"), ("t7c_", "cu_b"), ("t7d_", "vu_k"),
                       ("t7g_", "cu_d"), ("t7i_", "vu_k"), ("t7j_", "vu_k")):
    BASE_ROW[_prefix] = _base


def base_row(preset):
    """The preset `preset` changes one module of, or None."""
    if preset in BASE_ROW:
        return BASE_ROW[preset]
    return BASE_ROW.get(preset[:4])
DIGITS = "digits"

# Defaults per kind of data set: steps, batch size, learning rate, EMA decay,
# evaluation samples. Chosen once for the budget (2 CPU cores), the same for
# every preset; never tuned per preset.
DEFAULTS = {
    "toy2d": {"steps": 3000, "batch_size": 512, "learning_rate": 2e-3,
              "ema_decay": 0.999, "eval_samples": 4000},
    "digits": {"steps": 1000, "batch_size": 64, "learning_rate": 1e-3,
               "ema_decay": 0.999, "eval_samples": 1000},
    "folder": {"steps": 1000, "batch_size": 64, "learning_rate": 1e-3,
               "ema_decay": 0.999, "eval_samples": 1000},
}

METRICS = {  # data kind -> (primary, secondary) metric names, lower is better
    "toy2d": ("energy_distance", "sliced_w2"),
    "digits": ("frechet_digits_distance", "pixel_energy_distance"),
    "folder": ("frechet_distance", "pixel_energy_distance"),
}
METRIC_LABELS = {
    "energy_distance": "energy distance",
    "sliced_w2": "sliced W2",
    "frechet_digits_distance": "Frechet digits distance",
    "pixel_energy_distance": "pixel energy distance",
    "frechet_distance": "Frechet distance (FID with Inception features)",
}


def data_kind(dataset):
    if dataset == DIGITS:
        return "digits"
    return "folder" if os.path.isdir(str(dataset)) else "toy2d"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="two_moons",
                        help="a 2-D set (checkerboard, eight_gaussians, two_moons, swiss_roll, "
                             "rings, pinwheel), 'digits', or a folder of images (see "
                             "recipes/images.py; with --image-size)")
    parser.add_argument("--presets", nargs="+", default=TABLES_2_AND_3,
                        help="preset names or shell patterns ('t7b_*'); default: the rows "
                             "of Tables 2 and 3")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="one run per seed and preset (default: 0)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per run (default 3000 for 2-D, 1000 for digits)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 512 for 2-D, 64 for digits")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="RAdam learning rate (default 2e-3 for 2-D, 1e-3 for digits)")
    parser.add_argument("--ema-decay", type=float, default=None, help="default 0.999")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="samples per evaluation (default 4000 for 2-D, 1000 for digits)")
    parser.add_argument("--hidden-units", type=int, default=128, help="2-D MLP width")
    parser.add_argument("--num-blocks", type=int, default=3, help="2-D MLP residual blocks")
    parser.add_argument("--model-channels", type=int, default=16, help="digits SongUNet width")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--image-size", type=int, default=None,
                        help="folder: training resolution (resize and center-crop)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3,
                        help="folder: 3 (RGB) or 1 (grayscale)")
    parser.add_argument("--fid-features", choices=("inception", "digits"), default="inception",
                        help="folder: features of the Frechet distance (digits: 8x8 "
                             "grayscale only)")
    parser.add_argument("--inception-weights", default=None,
                        help="folder: pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("--no-scale-curriculum", action="store_true",
                        help="keep the curriculum's halve_every of the paper's 400K iterations")
    parser.add_argument("--output", default=None, help="default runs/ablation/<dataset>")
    parser.add_argument("--title", default=None, help="heading of table.md")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--verbose", type=int, default=0, help="fit verbosity (0, 1, 2)")
    _common.add_backend_argument(parser)
    args = parser.parse_args(argv)
    kind = data_kind(args.dataset)
    if kind == "folder":
        if args.image_size is None:
            parser.error("A folder data set needs --image-size (e.g. --image-size 32).")
        if args.fid_features == "inception" and not args.inception_weights:
            parser.error("--fid-features inception needs --inception-weights "
                         "pt_inception-2015-12-05-6726825d.pth (or --fid-features digits "
                         "for 8x8 grayscale images).")
        if args.fid_features == "digits" and (args.image_size != 8 or args.channels != 1):
            parser.error("--fid-features digits needs --image-size 8 --channels 1.")
        args.dataset = os.path.abspath(args.dataset)
    for key, value in DEFAULTS[kind].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.output is None:
        args.output = os.path.join("runs", "ablation", os.path.basename(args.dataset.rstrip("/")))
    _common.check_flags(
        parser, args,
        positive=("steps", "batch_size", "hidden_units", "model_channels"),
        minimums={"eval_samples": 2, "num_blocks": 0},
    )
    for seed in args.seeds:
        if seed < 0:
            parser.error(f"--seeds must be integers >= 0; got {seed}.")
    return args


def settings_of(args, backend):
    """The settings every run of the ablation shares (recorded in its JSON)."""
    return {
        "dataset": args.dataset, "steps": args.steps, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "ema_decay": args.ema_decay,
        "eval_samples": args.eval_samples, "backend": backend, "dropout": args.dropout,
        "network": network_settings(args),
        "scale_curriculum": not args.no_scale_curriculum,
    }


def network_settings(args):
    if data_kind(args.dataset) == "folder":
        return {"class": "SongUNet", "model_channels": args.model_channels,
                "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [],
                "image_size": args.image_size, "channels": args.channels,
                "fid_features": args.fid_features, "inception_weights": args.inception_weights}
    if data_kind(args.dataset) == "digits":
        return {"class": "SongUNet", "model_channels": args.model_channels,
                "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": []}
    return {"class": "MLP", "hidden_units": args.hidden_units, "num_blocks": args.num_blocks}


# ------------------------------------------------------------------ models
def build_network(settings, time_inputs, seed):
    """The network of the settings: `recipes/digits.py`'s SongUNet, or a residual MLP."""
    import keras_gcm

    net = settings["network"]
    if net["class"] == "SongUNet" and "image_size" in net:  # a folder (unconditional)
        return keras_gcm.networks.SongUNet(
            img_resolution=net["image_size"], in_channels=net["channels"],
            model_channels=net["model_channels"], channel_mult=net["channel_mult"],
            num_blocks=net["num_blocks"], attn_resolutions=net["attn_resolutions"],
            dropout=settings["dropout"], time_inputs=time_inputs, seed=seed,
        )
    if net["class"] == "SongUNet":
        import types

        import digits as digits_recipe

        options = types.SimpleNamespace(
            model_channels=net["model_channels"], channel_mult=net["channel_mult"],
            num_blocks=net["num_blocks"], attn_resolutions=net["attn_resolutions"],
            dropout=settings["dropout"], seed=seed,
        )
        return digits_recipe.build_network(options, time_inputs)
    return keras_gcm.networks.MLP(
        hidden_units=net["hidden_units"], num_blocks=net["num_blocks"],
        time_inputs=time_inputs, dropout=settings["dropout"], seed=seed,
    )


def build_model(preset, settings, seed):
    """A compiled `ConsistencyModel` of `preset` with the shared settings."""
    import keras_gcm

    network = build_network(settings, keras_gcm.presets.time_inputs(preset), seed)
    overrides = {"ema_decay": settings["ema_decay"], "seed": seed}
    spec = keras_gcm.presets.get(preset).get("curriculum")
    if spec is not None and settings["scale_curriculum"]:
        kwargs = dict(spec[1])
        paper = kwargs.get("halve_every", 50_000)
        kwargs["halve_every"] = max(1, round(paper * settings["steps"] / PAPER_ITERATIONS))
        overrides["curriculum"] = keras_gcm.presets.build_component([spec[0], kwargs])
    model = keras_gcm.ConsistencyModel.from_preset(preset, network, **overrides)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(settings["learning_rate"]))
    return model


# -------------------------------------------------------------------- data
def training_data(settings, seed):
    """`steps * batch_size` training examples (one epoch of `steps` batches)."""
    import keras_gcm

    n = settings["steps"] * settings["batch_size"]
    if data_kind(settings["dataset"]) == "folder":
        train = folder_images(settings)
        order = np.random.default_rng(seed).integers(0, len(train), size=n)
        return train[order]
    if settings["dataset"] == DIGITS:
        train = keras_gcm.data.digits("train")
        order = np.random.default_rng(seed).integers(0, len(train), size=n)
        return train[order]
    return keras_gcm.data.toy2d(settings["dataset"], n, seed=seed)


_FOLDER_CACHE = {}


def folder_images(settings):
    """A folder's images in `[-1, 1]` (read once with `recipes/images.py`'s loader)."""
    net = settings["network"]
    key = (settings["dataset"], net["image_size"], net["channels"])
    if key not in _FOLDER_CACHE:
        import images as images_recipe

        pixels, _, _ = images_recipe.load_folder(settings["dataset"], net["image_size"],
                                                 net["channels"], conditional=False)
        _FOLDER_CACHE[key] = pixels.astype(np.float32) / 127.5 - 1.0
    return _FOLDER_CACHE[key]


def _folder_reference(settings):
    """(extractor, reference statistics, flattened reference pixels) of a folder."""
    key = ("reference", settings["dataset"], str(settings["network"]))
    if key not in _FOLDER_CACHE:
        from keras_gcm import metrics

        net = settings["network"]
        extractor = (metrics.digits_features if net["fid_features"] == "digits"
                     else metrics.fid_inception_v3(net["inception_weights"]))
        images = folder_images(settings)
        stats = metrics.compute_statistics(extractor, images, progress=False)
        _FOLDER_CACHE[key] = (extractor, stats, images.reshape(len(images), -1))
    return _FOLDER_CACHE[key]


def evaluate(samples, settings, seed):
    """The two quality figures of `samples` (lower is better)."""
    if data_kind(settings["dataset"]) == "folder":
        from keras_gcm import metrics

        extractor, stats, pixels = _folder_reference(settings)
        samples = np.clip(samples, -1.0, 1.0)
        fid = metrics.FrechetInceptionDistance(extractor)
        fid.update_from_dataset(samples, progress=False)
        return {"frechet_distance": float(fid.result(stats)),
                "pixel_energy_distance": float(metrics.energy_distance(
                    samples.reshape(len(samples), -1), pixels))}
    if settings["dataset"] == DIGITS:
        import digits as digits_recipe

        return digits_recipe.evaluate(samples)
    import keras_gcm
    import toy2d

    # Fresh ground truth for every seed (seed offset 10_000: never a training seed).
    reference = keras_gcm.data.toy2d(settings["dataset"], settings["eval_samples"],
                                     seed=10_000 + seed)
    return toy2d.evaluate(samples, reference, seed)


def floor(settings, seed):
    """What a perfect model scores with this many samples (same metrics)."""
    import keras_gcm

    if data_kind(settings["dataset"]) == "folder":
        train = folder_images(settings)
        pick = np.random.default_rng(seed).permutation(len(train))[:settings["eval_samples"]]
        return evaluate(train[pick], settings, seed)
    if settings["dataset"] == DIGITS:
        train = keras_gcm.data.digits("train")
        pick = np.random.default_rng(seed).permutation(len(train))[:settings["eval_samples"]]
        return evaluate(train[pick], settings, seed)
    other = keras_gcm.data.toy2d(settings["dataset"], settings["eval_samples"],
                                 seed=20_000 + seed)
    return evaluate(other, settings, seed)


# --------------------------------------------------------------------- runs
def run_one(preset, settings, seed, verbose=0):
    """Trains one preset with one seed; returns the run's record and its 1-step samples."""
    import keras
    import keras_gcm

    keras.utils.set_random_seed(seed)
    model = build_model(preset, settings, seed)
    data = training_data(settings, seed)
    with _common.Timer() as timer:
        history = model.fit(data, batch_size=settings["batch_size"], epochs=1,
                            shuffle=False, verbose=verbose)
    one = keras_gcm.samplers.one_step(model, settings["eval_samples"], seed=30_000 + seed)
    two = keras_gcm.samplers.two_step(model, settings["eval_samples"], seed=40_000 + seed)
    record = {
        "preset": preset,
        "description": keras_gcm.presets.describe(preset),
        "paper_cifar10_fid": keras_gcm.presets.paper_fid(preset),
        "seed": seed,
        "settings": settings,
        "train_seconds": round(timer.seconds, 2),
        "final_loss": float(history.history["loss"][-1]),
        "one_step": evaluate(one, settings, seed),
        "two_step": evaluate(two, settings, seed),
    }
    return record, one


def _run_path(out, preset, seed):
    return os.path.join(out, "runs", f"{preset}__seed{seed}.json")


def _load_run(path, settings):
    import json

    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    return record if record.get("settings") == settings else None


# ------------------------------------------------------------------ summary
def summarise(records, metrics):
    """Per preset (in order of first appearance): mean, spread and values per figure."""
    summary = {}
    for record in records:
        entry = summary.setdefault(record["preset"], {
            "description": record["description"],
            "paper_cifar10_fid": record["paper_cifar10_fid"],
            "seeds": [],
        })
        entry["seeds"].append(record["seed"])
        for steps in ("one_step", "two_step"):
            for metric in metrics:
                entry.setdefault(f"{steps}/{metric}", []).append(record[steps][metric])
    for entry in summary.values():
        for key in [k for k in entry if "/" in k]:
            values = np.asarray(entry[key], dtype="float64")
            entry[key] = {
                "values": values.tolist(),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            }
    return summary


def paired_changes(records, metric):
    """Per preset with its base row in the run: the change of `metric` from the base.

    Differences are paired by seed (same seed: same initialisation, data and
    evaluation noise), then averaged: `{preset: {"base": name, "one_step":
    stat, "two_step": stat}}` with `stat` as in `summarise`. Negative is better.
    """
    by_key = {(r["preset"], r["seed"]): r for r in records}
    presets = list(dict.fromkeys(r["preset"] for r in records))
    changes = {}
    for preset in presets:
        base = base_row(preset)
        if base is None or base not in presets:
            continue
        seeds = [s for (p, s) in by_key if p == preset and (base, s) in by_key]
        entry = {"base": base}
        for steps in ("one_step", "two_step"):
            diffs = np.asarray([by_key[(preset, s)][steps][metric]
                                - by_key[(base, s)][steps][metric] for s in seeds])
            entry[steps] = {"values": diffs.tolist(), "mean": float(diffs.mean()),
                            "std": float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0}
        changes[preset] = entry
    return changes


def _format(stat, digits):
    if len(stat["values"]) == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _digits_for(summary, metrics):
    """Decimal places that show the differences (3 significant digits of the smallest)."""
    places = {}
    for metric in metrics:
        smallest = min(abs(e[f"{s}/{metric}"]["mean"]) for e in summary.values()
                       for s in ("one_step", "two_step"))
        smallest = max(smallest, 1e-6)
        places[metric] = int(min(6, max(1, 2 - np.floor(np.log10(smallest)))))
    return places


def markdown_table(summary, floors, settings, command, title=None, changes=None):
    """The ablation as a markdown table (with the command and the settings).

    `changes` (from `paired_changes`) adds a second table: the change of the
    primary figure from each preset's base row.
    """
    metrics = METRICS[data_kind(settings["dataset"])]
    places = _digits_for(summary, metrics)
    seeds = sorted({s for e in summary.values() for s in e["seeds"]})
    lines = []
    if title:
        lines += [f"### {title}", ""]
    header = ["preset", "table cell"]
    for metric in metrics:
        header += [f"1-step {METRIC_LABELS[metric]}", f"2-step {METRIC_LABELS[metric]}"]
    header += ["paper FID 1 / 2-step"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    best = {(s, m): min(e[f"{s}/{m}"]["mean"] for e in summary.values())
            for s in ("one_step", "two_step") for m in metrics}
    for name, entry in summary.items():
        cells = [f"`{name}`", entry["description"].split(":")[0]]
        for metric in metrics:
            for steps in ("one_step", "two_step"):
                stat = entry[f"{steps}/{metric}"]
                text = _format(stat, places[metric])
                if stat["mean"] == best[(steps, metric)]:
                    text = f"**{text}**"
                cells.append(text)
        fid = entry["paper_cifar10_fid"]
        cells.append("–" if fid is None else f"{fid[0]:.2f} / {fid[1]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    if floors:
        cells = ["floor", "ground truth vs ground truth"]
        for metric in metrics:
            values = np.asarray([f[metric] for f in floors])
            text = f"{values.mean():.{places[metric]}f}"
            cells += [text, text]
        cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    if changes:
        metric = metrics[0]
        label = METRIC_LABELS[metric]
        lines += ["", f"Change of the {label} from the row each preset builds on "
                      "(paired by seed; negative = better):", "",
                  "| preset | from | 1-step change | 2-step change |", "|---|---|---|---|"]
        for name, entry in changes.items():
            lines.append(f"| `{name}` | `{entry['base']}` | "
                         f"{_format(entry['one_step'], places[metric])} | "
                         f"{_format(entry['two_step'], places[metric])} |")
    spread = ("mean ± standard deviation over seeds " + ", ".join(map(str, seeds))
              if len(seeds) > 1 else f"seed {seeds[0]}")
    lines += [
        "",
        f"{settings['dataset']}, {settings['steps']} steps, batch {settings['batch_size']}, "
        f"RAdam lr {settings['learning_rate']:g}, EMA {settings['ema_decay']:g}, "
        f"{settings['eval_samples']} evaluation samples, {settings['backend']} backend; "
        f"{spread}; lower is better, best mean in bold. The last column is the paper's "
        "CIFAR-10 FID of the same table cell, for reference.",
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def plot_summary(path, summary, floors, settings):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_gcm.presets import time_inputs

    metric = METRICS[data_kind(settings["dataset"])][0]
    names = list(summary)
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.38 * len(names) + 1.6), sharey=True)
    for ax, steps, title in zip(axes, ("one_step", "two_step"), ("1-step", "2-step")):
        stats = [summary[n][f"{steps}/{metric}"] for n in names]
        means = np.asarray([s["mean"] for s in stats])
        stds = np.asarray([s["std"] for s in stats])
        colors = ["tab:orange" if time_inputs(n) == 2 else "tab:blue" for n in names]
        ax.barh(y, means, xerr=stds, color=colors, alpha=0.75, capsize=3)
        for i, s in enumerate(stats):
            ax.scatter(s["values"], [i] * len(s["values"]), s=8, color="k", zorder=3)
        if floors:
            ax.axvline(np.mean([f[metric] for f in floors]), color="gray", ls="--",
                       label="floor (ground truth)")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"{title} {METRIC_LABELS[metric]} (lower is better)")
        ax.set_yticks(y)
        ax.set_yticklabels(names)
        ax.invert_yaxis()
    fig.suptitle(f"{settings['dataset']}: {settings['steps']} steps, batch "
                 f"{settings['batch_size']}; bars: mean ± std over seeds, dots: seeds; "
                 "blue CU, orange VU",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(path, samples, settings):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples)
    cols = min(6, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        x = samples[name]
        if data_kind(settings["dataset"]) == "folder":
            from keras_gcm.utils import image_grid

            grid = image_grid(np.clip(x[:64], -1, 1), nrow=8)
            ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray")
        elif settings["dataset"] == DIGITS:
            grid = np.clip(x[:64, :, :, 0], -1, 1).reshape(8, 8, 8, 8)
            ax.imshow(grid.transpose(0, 2, 1, 3).reshape(64, 64), cmap="gray_r",
                      vmin=-1, vmax=1)
        else:
            ax.scatter(x[:, 0], x[:, 1], s=0.5, alpha=0.4)
            ax.set_xlim(-1.6, 1.6)
            ax.set_ylim(-1.6, 1.6)
            ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"{os.path.basename(settings['dataset'])}: 1-step samples (first seed)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def command_line(argv):
    args = sys.argv[1:] if argv is None else list(argv)
    return "python recipes/ablation.py " + " ".join(shlex.quote(a) for a in args)


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    import keras_gcm

    presets = keras_gcm.presets.match(args.presets)
    if data_kind(args.dataset) == "toy2d" and args.dataset not in keras_gcm.data.TOY2D_NAMES:
        raise ValueError(f"Unknown data set {args.dataset!r}: use one of "
                         f"{', '.join(keras_gcm.data.TOY2D_NAMES)} or 'digits'.")
    settings = settings_of(args, backend)
    out = _common.prepare_output(args.output)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    metrics = METRICS[data_kind(args.dataset)]

    records, first_samples = [], {}
    total = len(presets) * len(args.seeds)
    for seed in args.seeds:
        for preset in presets:
            path = _run_path(out, preset, seed)
            samples_path = path[:-len(".json")] + "_samples.npz"
            record = _load_run(path, settings)
            if record is None or not os.path.exists(samples_path):
                record, one = run_one(preset, settings, seed, verbose=args.verbose)
                np.savez_compressed(samples_path, one_step=one)
                _common.write_json(path, record)
            if seed == args.seeds[0]:
                with np.load(samples_path) as saved:
                    first_samples[preset] = saved["one_step"]
            records.append(record)
            print(f"[{len(records)}/{total}] {preset} seed {seed}: "
                  f"1-step {record['one_step'][metrics[0]]:.4f}, "
                  f"2-step {record['two_step'][metrics[0]]:.4f} "
                  f"({record['train_seconds']:.0f}s)", flush=True)

    floors = [floor(settings, seed) for seed in args.seeds]
    summary = summarise(records, metrics)
    changes = paired_changes(records, metrics[0])
    command = command_line(argv)
    _common.write_json(os.path.join(out, "runs.json"), records)
    _common.write_json(os.path.join(out, "summary.json"), {
        "settings": settings, "seeds": args.seeds, "command": command,
        "floor": floors, "presets": summary, "changes_from_base_row": changes,
    })
    table = markdown_table(summary, floors, settings, command, args.title, changes)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    if not args.no_plots:
        plot_summary(os.path.join(out, "ablation.png"), summary, floors, settings)
        plot_samples(os.path.join(out, "samples.png"), first_samples, settings)
    print(table)
    return summary


if __name__ == "__main__":
    main()
