"""Networks F(x, c_t[, c_s]) for consistency models."""

from keras_gcm.networks.ddpmpp import SongUNet
from keras_gcm.networks.dit import DiT
from keras_gcm.networks.embeddings import FourierEmbedding
from keras_gcm.networks.embeddings import PositionalEmbedding
from keras_gcm.networks.mlp import MLP
from keras_gcm.networks.vae import AutoencoderKL

__all__ = ["AutoencoderKL", "DiT", "MLP", "FourierEmbedding", "PositionalEmbedding", "SongUNet"]
