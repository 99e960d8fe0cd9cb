"""The input form as a card records it: the steps in words."""

from __future__ import annotations

from digitnet.service.contract.input_form import InputForm


def test_the_form_describes_its_steps_in_order() -> None:
    assert InputForm(deskew=True, blur=1.0).describe() == "deskewed, blurred (sigma 1 px)"
    assert InputForm(deskew=True).describe() == "deskewed"
    assert InputForm().describe() == "as given"
