"""Compiled rules with their per-subject state, one module per rule family: :mod:`.level` (threshold,
duration, rate), :mod:`.events` (state, count), :mod:`.no_data`, :mod:`.correlation` and :mod:`.care`
(care inactivity); :mod:`.base` holds what they share. Only :class:`twin.rules.engine.Engine` drives them."""
