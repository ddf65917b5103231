"""keras_mha: hand-written multi-head attention and an encoder-decoder
Transformer for Keras 3 (TensorFlow, JAX, PyTorch), with cached decoding
that records every attention head."""

from keras_mha.decoder import TransformerDecoderLayer
from keras_mha.decoding import beam_search, greedy_search
from keras_mha.embedding import TokenAndPositionEmbedding
from keras_mha.encoder import TransformerEncoderLayer
from keras_mha.errors import InvalidArgumentError
from keras_mha.feed_forward import FeedForward
from keras_mha.masks import causal_mask, merge_masks, padding_mask
from keras_mha.multi_head_attention import MultiHeadAttention
from keras_mha.transformer import Transformer
from keras_mha.translator import Translation, Translator

__all__ = [
    "FeedForward",
    "InvalidArgumentError",
    "MultiHeadAttention",
    "TokenAndPositionEmbedding",
    "Transformer",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "Translation",
    "Translator",
    "beam_search",
    "causal_mask",
    "greedy_search",
    "merge_masks",
    "padding_mask",
]
