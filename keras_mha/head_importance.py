"""How much each attention head matters to one translation, by ablation.

For a source and its translation, each head of each kind (encoder self-,
decoder self- and cross-attention) is switched off in turn (its output
zeroed before the output projection, `disabled_heads`) and the same
translation is scored again, teacher-forced: the head's importance is the
drop in the translation's log-probability, `log P(y | x)` with every head
minus `log P(y | x)` without it. A large drop: the model leans on that
head for this translation; near 0 (or below): it could do without it.
This measures what the model does, unlike attention weights, which only
say where a head looked.

Example:

```python
from keras_mha.head_importance import head_importance

drops = head_importance(translator, "I like cats.")  # the model's own output
drops["cross"].shape  # (decoder layers, heads)
```
"""

import numpy as np

from keras_mha.tokens import EOS
from keras_mha.translator import ATTENTION_KINDS


def head_importance(translator, source, target=None):
    """The log-probability drop of `target` when each head is switched off.

    Args:
        translator: a `keras_mha.Translator`.
        source: the source text.
        target: its translation (text or pieces, as `Translator.score`);
            `None`: the model's own greedy translation (without its last
            piece if it was cut at `max_length` with no end piece).

    Returns:
        `{"encoder": (N_e, H), "decoder": (N_d, H), "cross": (N_d, H)}`
        float arrays of `score(all heads) - score(head off)`, in nats, and
        `"score"`, the translation's log-probability with every head.
    """
    model = translator.model
    if target is None:
        # An output cut at `max_length` has no end piece: scored, it gets
        # one, so its last piece makes room for it.
        own = translator.translate(source).target_tokens
        target = [p for p in own if p != EOS][: model.max_length - 1]
    layers = {
        "encoder": model.num_encoder_layers,
        "decoder": model.num_decoder_layers,
        "cross": model.num_decoder_layers,
    }
    base = translator.score(source, target, top_k=0, return_attention=False)
    drops = {}
    for kind in ATTENTION_KINDS:
        drop = np.zeros((layers[kind], model.num_heads))
        for layer in range(layers[kind]):
            for head in range(model.num_heads):
                ablated = translator.score(
                    source,
                    target,
                    top_k=0,
                    return_attention=False,
                    disabled_heads={kind: [(layer, head)]},
                )
                drop[layer, head] = base.score - ablated.score
        drops[kind] = drop
    drops["score"] = base.score
    return drops
