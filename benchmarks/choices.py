"""Measure the choices the paper leaves open: both readings, several data sets and seeds.

    python benchmarks/choices.py                      # all choices, digits + 2 2-D sets, 3 seeds
    python benchmarks/choices.py --choices noise_scale --datasets two_moons --seeds 0

Each choice of the docs page "Choices the paper leaves open" is an option of a
`keras_gcm` component. For every choice this script trains its base preset(s)
under each reading (the preset's data with that one option changed, every
other option at the library default) with the settings of
`recipes/ablation.py` (a residual MLP on 2-D sets, the small SongUNet on
digits), samples with 1 and 2 steps and measures the result against fresh data
(energy distance on 2-D sets, Frechet digits distance on digits; lower is
better). Runs that give the same model configuration are trained once.

Writes `<output>/runs/*.json` (one per run; an interrupted measurement
resumes), `<output>/choices.json` (every run, mean and sample standard
deviation per row) and `<output>/choices.md` (one markdown table per
choice, mean +- sd over seeds, and the paired change reading B - reading A
with its spread), and prints the tables.
"""

import argparse
import copy
import hashlib
import json
import os
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes"))
import ablation  # noqa: E402
import _common  # noqa: E402


def _set(path, value):
    """An edit of preset data: sets `preset[k0][1][k1]...` (a component kwarg).

    The importance density is left alone where importance weighting is off
    (Table 3 J): both readings are then the same model, trained once.
    """
    def edit(preset):
        preset = copy.deepcopy(preset)
        if path[1] == "importance_density" and not preset.get("importance_weighting"):
            return preset
        key, arg = path
        spec = preset.get(key)
        if spec is None:
            spec = ["OTFlow", {}] if key == "interpolant" else None
        spec = copy.deepcopy(spec)
        spec[1][arg] = value
        preset[key] = spec
        return preset
    return edit


def _same(preset):
    return copy.deepcopy(preset)


# choice -> base presets, readings (name -> edit of the preset data), the
# paper's reading, the reading that was the library's behaviour before.
CHOICES = {
    "noise_scale": {
        "title": "Noise scale: z ~ N(0, sigma_d^2 I) or N(0, I) (section 3.1)",
        "presets": ["gcm_cu"],
        "readings": {"sigma_data": _set(("interpolant", "noise_scale"), "sigma_data"),
                     "unit": _set(("interpolant", "noise_scale"), "unit")},
        "paper": "sigma_data", "before": "unit",
    },
    "vu_importance": {
        "title": "VU importance weight: w(t) / p(t | s) or w(t) / p_q(q) (section 3.3), J -> K -> L",
        "presets": ["vu_j", "vu_k", "gcm_vu"],
        "readings": {"conditional": _set(("time_sampler", "importance_density"), "conditional"),
                     "unit": _set(("time_sampler", "importance_density"), "unit")},
        "paper": None, "before": "conditional",
    },
    "particle_form": {
        "title": "Particle-loss form: Eq. 39 (appendix G.1) or Eq. 40",
        "presets": ["cu_e", "vu_k"],
        "readings": {"eq39": _set(("loss", "form"), "eq39"),
                     "eq40": _set(("loss", "form"), "eq40")},
        "paper": "eq39", "before": "eq40",
    },
    "kernel_times": {
        "title": "Time-aware MMD kernel times of the teacher points: t or r (Eq. 44)",
        "presets": ["gcm_cu", "gcm_vu"],
        "readings": {"t": _set(("loss", "kernel_times"), "t"),
                     "r": _set(("loss", "kernel_times"), "r")},
        "paper": "r", "before": "t",
    },
    "curriculum_floor": {
        "title": "Epsilon-halving curriculum: no floor (appendix G.1) or floored at the step's epsilon",
        "presets": ["t7d_curriculum"],
        "readings": {"no_floor": _set(("curriculum", "floor"), False),
                     "floor": _set(("curriculum", "floor"), True)},
        "paper": "no_floor", "before": "floor",
    },
}

# Short runs for the 2-core budget (the same for every reading; never tuned).
RUN_SETTINGS = {
    "toy2d": ["--steps", "400", "--batch-size", "256", "--eval-samples", "1000"],
    "digits": ["--steps", "150", "--batch-size", "64", "--eval-samples", "300",
               "--model-channels", "16"],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--choices", nargs="+", default=list(CHOICES), choices=list(CHOICES))
    parser.add_argument("--datasets", nargs="+", default=["two_moons", "checkerboard", "digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps-2d", type=int, default=None, help="default 400")
    parser.add_argument("--steps-digits", type=int, default=None, help="default 150")
    parser.add_argument("--presets", nargs="+", default=None,
                        help="only these base presets of the chosen choices (default: all)")
    parser.add_argument("--output", default=os.path.join("runs", "choices"))
    parser.add_argument("--summary-only", action="store_true",
                        help="train nothing: summarise the runs already in --output")
    _common.add_backend_argument(parser)
    return parser.parse_args(argv)


def settings_for(dataset, args, backend):
    kind = ablation.data_kind(dataset)
    extra = list(RUN_SETTINGS[kind])
    steps = args.steps_digits if kind == "digits" else args.steps_2d
    if steps is not None:
        extra[1] = str(steps)
    ab_args = ablation.parse_args(["--dataset", dataset] + extra)
    return ablation.settings_of(ab_args, backend)


def build_model(preset_data, settings, seed):
    import keras_gcm

    data = copy.deepcopy(preset_data)
    data.pop("description", None)
    time_inputs = 2 if data["time_sampler"][0] == "VariableUpperLimit" else 1
    network = ablation.build_network(settings, time_inputs, seed)
    if data.get("curriculum") is not None:
        paper = data["curriculum"][1].get("halve_every", 50_000)
        data["curriculum"][1]["halve_every"] = max(
            1, round(paper * settings["steps"] / ablation.PAPER_ITERATIONS))
    kwargs = {k: keras_gcm.presets.build_component(v) for k, v in data.items()}
    kwargs.update(ema_decay=settings["ema_decay"], seed=seed)
    model = keras_gcm.ConsistencyModel(network, **kwargs)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(settings["learning_rate"]))
    return model


def run_one(preset_data, settings, seed):
    import keras
    import keras_gcm

    keras.utils.set_random_seed(seed)
    model = build_model(preset_data, settings, seed)
    data = ablation.training_data(settings, seed)
    start = time.perf_counter()
    history = model.fit(data, batch_size=settings["batch_size"], epochs=1, shuffle=False,
                        verbose=0)
    seconds = time.perf_counter() - start
    one = keras_gcm.samplers.one_step(model, settings["eval_samples"], seed=30_000 + seed)
    two = keras_gcm.samplers.two_step(model, settings["eval_samples"], seed=40_000 + seed)
    return {
        "train_seconds": round(seconds, 2),
        "final_loss": float(history.history["loss"][-1]),
        "one_step": ablation.evaluate(one, settings, seed),
        "two_step": ablation.evaluate(two, settings, seed),
    }


def _key(preset_data, settings, seed):
    blob = json.dumps([preset_data, settings, seed], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _stat(values):
    values = np.asarray(values, dtype="float64")
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"values": values.tolist(), "mean": float(values.mean()), "sd": sd}


def _fmt(stat, digits=4):
    if stat is None:
        return "-"
    return f"{stat['mean']:.{digits}g} ± {stat['sd']:.2g}"


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    import keras_gcm
    out = args.output
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    settings = {d: settings_for(d, args, backend) for d in args.datasets}
    results = []  # (choice, preset, reading, dataset, seed, record)
    for seed in args.seeds:
        for dataset in args.datasets:
            kind = ablation.data_kind(dataset)
            metric = ablation.METRICS[kind][0]
            for choice in args.choices:
                spec = CHOICES[choice]
                for preset in _presets(spec, args):
                    for reading, edit in spec["readings"].items():
                        data = edit(keras_gcm.presets.get(preset))
                        key = _key(data, settings[dataset], seed)
                        path = os.path.join(out, "runs", f"{key}.json")
                        if os.path.exists(path):
                            with open(path) as f:
                                record = json.load(f)
                        elif args.summary_only:
                            continue
                        else:
                            record = run_one(data, settings[dataset], seed)
                            record.update(preset=preset, dataset=dataset, seed=seed,
                                          settings=settings[dataset], config=data)
                            with open(path, "w") as f:
                                json.dump(record, f, indent=1)
                            print(f"[{dataset} seed {seed}] {choice}: {preset} / {reading}: "
                                  f"1-step {metric} {record['one_step'][metric]:.4g}, "
                                  f"2-step {record['two_step'][metric]:.4g} "
                                  f"({record['train_seconds']:.0f} s)", flush=True)
                        results.append({"choice": choice, "preset": preset, "reading": reading,
                                        "dataset": dataset, "seed": seed,
                                        "one_step": record["one_step"][metric],
                                        "two_step": record["two_step"][metric],
                                        "metric": metric,
                                        "train_seconds": record["train_seconds"]})
    summary = summarise(results, args)
    command = "python benchmarks/choices.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    text = markdown(summary, args, settings, command.strip())
    with open(os.path.join(out, "choices.json"), "w") as f:
        json.dump({"command": command.strip(), "backend": backend, "settings": settings,
                   "runs": results, "summary": summary}, f, indent=1)
    with open(os.path.join(out, "choices.md"), "w") as f:
        f.write(text)
    print(text)


def _presets(spec, args):
    return [p for p in spec["presets"] if args.presets is None or p in args.presets]


def summarise(results, args):
    summary = {}
    for choice in args.choices:
        spec = CHOICES[choice]
        readings = list(spec["readings"])
        rows = {}
        for preset in _presets(spec, args):
            for reading in readings:
                row = rows.setdefault(f"{preset} / {reading}", {})
                for dataset in args.datasets:
                    for steps in ("one_step", "two_step"):
                        values = [r[steps] for r in results if r["choice"] == choice
                                  and r["preset"] == preset and r["reading"] == reading
                                  and r["dataset"] == dataset]
                        if values:
                            row[f"{dataset}/{steps}"] = _stat(values)
            # Paired change: second reading - first reading, same seed.
            row = rows.setdefault(f"{preset}: {readings[1]} - {readings[0]}", {})
            for dataset in args.datasets:
                for steps in ("one_step", "two_step"):
                    pairs = {}
                    for r in results:
                        if r["choice"] == choice and r["preset"] == preset and r["dataset"] == dataset:
                            pairs.setdefault(r["seed"], {})[r["reading"]] = r[steps]
                    diffs = [p[readings[1]] - p[readings[0]] for p in pairs.values()
                             if len(p) == 2]
                    if diffs:
                        row[f"{dataset}/{steps}"] = _stat(diffs)
        summary[choice] = {"title": spec["title"], "readings": readings,
                           "paper": spec["paper"], "before": spec["before"], "rows": rows}
    return summary


def markdown(summary, args, settings, command):
    lines = [f"Command: `{command}`; seeds {args.seeds}; backend {next(iter(settings.values()))['backend']}.",
             ""]
    for dataset, s in settings.items():
        lines.append(f"- {dataset}: {s['steps']} steps, batch {s['batch_size']}, RAdam lr "
                     f"{s['learning_rate']:g}, EMA {s['ema_decay']:g}, {s['eval_samples']} "
                     f"evaluation samples, metric "
                     f"{ablation.METRIC_LABELS[ablation.METRICS[ablation.data_kind(dataset)][0]]}")
    lines.append("")
    for choice, entry in summary.items():
        lines += [f"### {entry['title']}", ""]
        header = "| row |" + "".join(f" {d} 1-step | {d} 2-step |" for d in args.datasets)
        lines += [header, "|---|" + "---|---|" * len(args.datasets)]
        for name, row in entry["rows"].items():
            cells = "".join(f" {_fmt(row.get(f'{d}/one_step'))} | {_fmt(row.get(f'{d}/two_step'))} |"
                            for d in args.datasets)
            lines.append(f"| {name} |{cells}")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
