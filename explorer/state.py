"""What the app remembers of one visitor's session."""

import dataclasses
import itertools

from keras_mha.translator import Translation

_SERIALS = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class Request:
    """What the visitor asked for.

    Attributes:
        text: the source text as typed.
        model: model folder name, e.g. "en-es".
        decoding: "greedy" or "beam".
        beam_size: beams for beam search (1 for greedy).
        top_k: candidates recorded for each output piece.
    """

    text: str
    model: str
    decoding: str = "greedy"
    beam_size: int = 1
    top_k: int = 5


@dataclasses.dataclass(frozen=True)
class ExplorerState:
    """One translation and which of its hypotheses the views show.

    Attributes:
        request: what was asked.
        result: the search's best translation (its `n_best` holds the
            other hypotheses of a beam search).
        shown: index into `hypotheses` of the one the views show.
        serial: a number unique to this state, so that the browser can
            tell a new translation from the one it has drawn.
        measured_aer: `{alignment method: AER %}` measured for the model on
            human gold links (its card's `alignment`), empty if never.
    """

    request: Request
    result: Translation
    shown: int = 0
    measured_aer: dict = dataclasses.field(default_factory=dict, compare=False)
    serial: int = dataclasses.field(default_factory=lambda: next(_SERIALS))

    @property
    def hypotheses(self):
        return [self.result, *self.result.n_best]

    @property
    def translation(self):
        """The hypothesis the views show."""
        return self.hypotheses[self.shown]

    def show(self, index):
        """A new state showing hypothesis `index`."""
        if not 0 <= index < len(self.hypotheses):
            raise IndexError(
                f"Hypothesis {index} does not exist: there are {len(self.hypotheses)}."
            )
        return dataclasses.replace(self, shown=index, serial=next(_SERIALS))
