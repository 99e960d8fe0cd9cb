"""The model's input form: what the model file does to MNIST-form pixels before its network sees them.

The steps themselves are ONNX operators inside the model file (training/form_graph.py builds them, and
training runs the same nodes over its digits), so every runtime that loads the file applies them. Here is
only what the card records of them, and the words for reports.

Usage:
    form = InputForm(deskew=True, blur=1.0)
    form.describe()          # "deskewed, blurred (sigma 1 px)"
"""

from __future__ import annotations

from dataclasses import dataclass

#: The most blur a model's input form may ask for (sigma in pixels): more would smear a 28x28 digit away.
MAX_BLUR = 4.0


@dataclass(frozen=True)
class InputForm:
    """The steps of a model's input form, as its card records them."""

    deskew: bool = False  # shear each digit upright and re-centre it
    blur: float = 0.0  # then blur it: the sigma, in pixels, of a Gaussian (0: none)

    def describe(self) -> str:
        """The steps in words, for reports: e.g. "deskewed, blurred (sigma 1 px)"."""
        steps = (["deskewed"] if self.deskew else []) + ([f"blurred (sigma {self.blur:g} px)"] if self.blur > 0 else [])
        return ", ".join(steps) or "as given"
