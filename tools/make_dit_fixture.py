"""Regenerates `tests/fixtures/dit_random.npz` from facebookresearch/DiT's PyTorch code.

The fixture lets `tests/test_dit.py` check `keras_gcm.networks.DiT` against
the reference implementation without the reference code in the project: it
stores a small DiT's random weights (under the PyTorch state-dict names),
seeded inputs and the reference outputs, plus the parameter counts of the
B/4, B/2, L/2 and XL/2 configurations.

The reference is facebookresearch/DiT `models.py` (its `DiT`, built from
timm's `PatchEmbed`, `Attention` and `Mlp`) in the two-time form of
MeanFlow's DiT (Gsunshine/meanflow `models/models_dit.py`): a second
`TimestepEmbedder`, `h_embedder`, whose output is added to the conditioning,
`c = t_embedder(t) + h_embedder(h) + y_embedder(y)`. The forward pass below
is MeanFlow's `__call__` written with DiT's torch modules.

Run it outside the project, e.g.:

    git clone https://github.com/facebookresearch/DiT /tmp/dit
    pip install --target /tmp/timm-pkgs timm --no-deps
    PYTHONPATH=/tmp/timm-pkgs:/tmp/dit python tools/make_dit_fixture.py

(timm imports torchvision at import time for names DiT's layers do not use;
where torchvision does not install beside the CPU torch, an import-only stub
module on PYTHONPATH is enough.)
"""

import os

import numpy as np

FIXTURE_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests", "fixtures", "dit_random.npz",
)
CONFIG = dict(img_resolution=8, in_channels=4, patch_size=2, hidden_size=32, depth=2,
              num_heads=4, label_dim=10)
WEIGHT_SEED = 20230302
INPUT_SEED = 7
BATCH = 4


def main():
    import torch

    import models  # facebookresearch/DiT models.py

    torch.manual_seed(0)
    cfg = CONFIG
    net = models.DiT(
        input_size=cfg["img_resolution"], patch_size=cfg["patch_size"],
        in_channels=cfg["in_channels"], hidden_size=cfg["hidden_size"],
        depth=cfg["depth"], num_heads=cfg["num_heads"], class_dropout_prob=0.1,
        num_classes=cfg["label_dim"], learn_sigma=False,
    ).eval()
    net.h_embedder = models.TimestepEmbedder(cfg["hidden_size"])
    rng = np.random.default_rng(WEIGHT_SEED)
    state = {}
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name == "pos_embed":
                state[name] = param.numpy().copy()
                continue
            scale = 0.3 if param.ndim > 1 else 0.1
            value = (rng.standard_normal(tuple(param.shape)) * scale).astype("float32")
            param.copy_(torch.from_numpy(value))
            state[name] = value

    rng = np.random.default_rng(INPUT_SEED)
    res, ch = cfg["img_resolution"], cfg["in_channels"]
    x = rng.standard_normal((BATCH, res, res, ch)).astype("float32")  # channels-last
    t = rng.uniform(0.0, 5.0, BATCH).astype("float32")
    h = rng.uniform(0.0, 5.0, BATCH).astype("float32")
    y = np.array([0, 3, 9, cfg["label_dim"]], dtype="int64")  # the last is the null class

    with torch.no_grad():
        xt = torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())
        tokens = net.x_embedder(xt) + net.pos_embed
        c = (net.t_embedder(torch.from_numpy(t)) + net.h_embedder(torch.from_numpy(h))
             + net.y_embedder(torch.from_numpy(y), False))
        for block in net.blocks:
            tokens = block(tokens, c)
        out2 = net.unpatchify(net.final_layer(tokens, c)).numpy()
        # One time input: DiT's own forward (c = t_embedder(t) + y_embedder(y)).
        out1 = net(xt, torch.from_numpy(t), torch.from_numpy(y)).numpy()

    counts = {}
    for key, factory in (("b4", models.DiT_B_4), ("b2", models.DiT_B_2),
                         ("l2", models.DiT_L_2), ("xl2", models.DiT_XL_2)):
        with torch.device("meta"):
            big = factory(learn_sigma=False, num_classes=1000, class_dropout_prob=0.1)
            hidden = big.blocks[0].norm1.normalized_shape[0]
            extra = models.TimestepEmbedder(hidden)
        n = sum(p.numel() for p in big.parameters() if p.requires_grad)
        counts[f"count_{key}_t"] = n
        counts[f"count_{key}_ts"] = n + sum(p.numel() for p in extra.parameters())

    np.savez_compressed(
        FIXTURE_PATH,
        x=x, c_t=t, c_s=h, class_labels=y.astype("int32"),
        out_two_times=np.transpose(out2, (0, 2, 3, 1)),
        out_one_time=np.transpose(out1, (0, 2, 3, 1)),
        **{"w/" + k: v for k, v in state.items()},
        **{k: np.int64(v) for k, v in counts.items()},
    )
    print("wrote", FIXTURE_PATH, {k: int(v) for k, v in counts.items()})


if __name__ == "__main__":
    main()
