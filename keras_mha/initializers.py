"""Fresh initializer copies: one per weight.

A Keras initializer instance draws the same values at every call (an unseeded
one fixes its seed when it is made), so weights of one shape built from one
instance would start out equal: the query, key and value kernels of a layer,
or the same kernel in every layer. Each weight gets its own copy, as in
keras-hub's layers.
"""

import keras


def clone_initializer(initializer):
    """A new instance of `initializer` with the same configuration.

    Args:
        initializer: a `keras.initializers.Initializer` (anything else, such
            as `None`, is returned as it is).

    Returns:
        An initializer of the same class and arguments; unseeded, it draws a
        new seed (from Keras' global seed, so `keras.utils.set_random_seed`
        still makes the model reproducible).
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())
