"""Command line: `python -m keras_mha.translate --model saved_models/en-es "Hi."`

Translates the texts given as arguments, or every line of standard input
(in batches) when there are none. `--attention out.npz` writes the attention
tensors and token labels of the (first) translation.
"""

import argparse
import sys

import numpy as np

from keras_mha.translator import Translator


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="texts; none: read stdin")
    parser.add_argument("--model", required=True, help="a model folder")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--n-best", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--attention", help="write attention to this .npz")
    parser.add_argument("--verbose", action="store_true", help="pieces, scores")
    args = parser.parse_args(argv)

    translator = Translator.load(args.model)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    translations = translator.translate(
        texts,
        beam_size=args.beam_size,
        length_penalty=args.length_penalty,
        n_best=args.n_best,
        return_attention=bool(args.attention),
        batch_size=args.batch_size,
    )
    for translation in translations:
        print(translation.text)
        if args.verbose:
            print(
                f"  score {translation.score:.3f}  pieces "
                f"{' '.join(translation.target_tokens)}",
                file=sys.stderr,
            )
            for other in translation.n_best:
                print(f"  alt {other.score:.3f}  {other.text}", file=sys.stderr)
        if translation.truncated:
            print("  (source truncated to the model's length)", file=sys.stderr)
    if args.attention and translations:
        np.savez_compressed(args.attention, **translations[0].to_npz_dict())
        print(f"attention written to {args.attention}", file=sys.stderr)


if __name__ == "__main__":
    main()
