"""Command line: `python -m keras_mha.translate --model saved_models/en-es "Hi."`

Translates the texts given as arguments, or every line of standard input
(in batches) when there are none. `--top-k` lists what the model weighed at
every step, `--prefix` forces how the translation starts, `--score` scores a
given translation instead of translating, `--align` prints word alignments
(Pharaoh `i-j` links, i = source word, j = target word) and `--attention
out.npz` writes the attention tensors and token labels of the (first)
translation.
"""

import argparse
import sys

import numpy as np

from keras_mha.alignment import (
    ALIGNMENT_METHODS,
    DEFAULT_METHOD,
    is_deletion,
    parse_links,
    parse_method,
    source_words,
    to_pharaoh,
    word_alignment,
)
from keras_mha.deletion import word_deletion
from keras_mha.translator import Translator


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="texts; none: read stdin")
    parser.add_argument("--model", required=True, help="a model folder")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--n-best", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--top-k",
        type=int,
        default=0,
        help="print the K most probable pieces of every step (stderr)",
    )
    parser.add_argument(
        "--prefix",
        help="force the translation to start with this target text, then decode freely",
    )
    parser.add_argument(
        "--score",
        metavar="TARGET",
        help="score TARGET as the translation of the (one) text instead of "
        "translating: prints its log-probability and per-piece probabilities",
    )
    parser.add_argument(
        "--align",
        metavar="METHOD",
        help="print word alignments as Pharaoh links after each translation; "
        f"METHOD: {DEFAULT_METHOD} (the model again without each source word; "
        f"the lowest measured error), {', '.join(ALIGNMENT_METHODS)}, layer:<n> "
        "or head:<n>:<h>",
    )
    parser.add_argument("--attention", help="write attention to this .npz")
    parser.add_argument("--verbose", action="store_true", help="pieces, scores")
    return parser.parse_args(argv)


def _print_details(translation, args):
    if args.verbose or args.score is not None:
        print(
            f"  score {translation.score:.3f}  pieces "
            f"{' '.join(translation.target_tokens)}",
            file=sys.stderr,
        )
    if args.score is not None:
        for piece, prob in zip(translation.target_tokens, translation.token_probs):
            print(f"  {piece}\t{prob:.4f}", file=sys.stderr)
    for other in translation.n_best:
        print(f"  alt {other.score:.3f}  {other.text}", file=sys.stderr)
    for piece, alternatives in zip(translation.target_tokens, translation.alternatives):
        ranked = "  ".join(f"{p} {q:.3f}" for p, q in alternatives)
        print(f"  {piece}\t| {ranked}", file=sys.stderr)
    if translation.truncated:
        print("  (source truncated to the model's length)", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    translator = Translator.load(args.model)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    need_attention = bool(args.attention or args.align)
    try:
        if args.align:  # A bad method fails before decoding.
            parse_links(args.align)
            if not is_deletion(args.align):
                parse_method(args.align)
        if args.score is not None:
            if len(texts) != 1:
                raise ValueError("--score takes exactly one source text")
            translations = [
                translator.score(
                    texts[0],
                    args.score,
                    top_k=args.top_k,
                    return_attention=need_attention,
                )
            ]
        else:
            translations = translator.translate(
                texts,
                beam_size=args.beam_size,
                length_penalty=args.length_penalty,
                n_best=args.n_best,
                return_attention=need_attention,
                batch_size=args.batch_size,
                top_k=args.top_k,
                prefix=args.prefix,
            )
    except ValueError as error:
        sys.exit(f"error: {error}")
    for translation in translations:
        print(translation.text)
        if args.align:
            deletion = None
            if is_deletion(args.align):
                deletion = word_deletion(
                    translator,
                    " ".join(source_words(translation)),
                    translation.target_tokens,
                )
            print(to_pharaoh(word_alignment(translation, args.align, deletion)))
        _print_details(translation, args)
    if args.attention and translations:
        np.savez_compressed(args.attention, **translations[0].to_npz_dict())
        print(f"attention written to {args.attention}", file=sys.stderr)


if __name__ == "__main__":
    main()
