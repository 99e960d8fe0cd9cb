"""How digitnet draws the network, in the pictures (visuals/) and on the page (served to it as CSS and JSON):
one colour meaning, the video's (blue pushes a neuron up, red holds it down), and one number of connections."""

from __future__ import annotations

from typing import Final

#: A connection whose contribution (weight x activation) is positive, or a weight on ink that raises the neuron.
PUSHES_UP: Final = "#4ea1ff"
#: A connection or weight that holds the neuron down.
HOLDS_DOWN: Final = "#ff6b5e"
#: The winning output.
WINNER: Final = "#ffd24a"
#: Connections drawn into each neuron of layer 1, 2 and 3 (the outputs): only the strongest few, so that the
#: picture stays readable.
STRONGEST: Final = {1: 3, 2: 4, 3: 4}


def css() -> str:
    """The colours as CSS custom properties, for the page."""
    return f":root {{ --pos: {PUSHES_UP}; --neg: {HOLDS_DOWN}; --win: {WINNER}; }}\n"
