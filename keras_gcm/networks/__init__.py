"""Networks F(x, c_t[, c_s]) for consistency models."""

from keras_gcm.networks.ddpmpp import SongUNet
from keras_gcm.networks.edm_checkpoint import edm_state_dict_shapes
from keras_gcm.networks.edm_checkpoint import load_edm_state_dict
from keras_gcm.networks.edm2 import EDM2UNet
from keras_gcm.networks.edm2_checkpoint import edm2_state_dict
from keras_gcm.networks.edm2_checkpoint import load_edm2_checkpoint
from keras_gcm.networks.edm2_checkpoint import read_state_dict
from keras_gcm.networks.edm_bridge import EDMDenoiserVelocity
from keras_gcm.networks.dit import DiT
from keras_gcm.networks.embeddings import FourierEmbedding
from keras_gcm.networks.embeddings import PositionalEmbedding
from keras_gcm.networks.mlp import MLP
from keras_gcm.networks.vae import AutoencoderKL

__all__ = [
    "EDM2UNet",
    "EDMDenoiserVelocity",
    "MLP",
    "FourierEmbedding",
    "PositionalEmbedding",
    "SongUNet",
    "edm_state_dict_shapes",
    "load_edm_state_dict",
    "edm2_state_dict",
    "load_edm2_checkpoint",
    "read_state_dict",
    "AutoencoderKL",
    "DiT",
]
