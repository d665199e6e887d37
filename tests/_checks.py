"""Assertions several test modules share."""
from __future__ import annotations


def check_advice_display(adv, move: str, direction: str, regime: str) -> None:
    """An :class:`Advice` for batch size 64 at density 0.1 with 3 retraining seeds: its text
    leads with the move and fits in 7 lines, its Dataset carries the move and the pairs."""
    text = str(adv)
    assert text.splitlines()[0].startswith(f"Advice: {move} ({direction}; regime {regime}")
    assert "batch_size = 64 at density 0.1" in text and len(text.splitlines()) <= 7
    ds = adv.to_dataset()
    assert ds.attrs["regime"] == regime and ds.attrs["move"] == move
    assert ds["lmc"].dims == ("pair",) and ds.sizes["retrain_seed"] == 3
