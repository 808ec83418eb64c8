"""Experiment presets shipped with the package (``neucodex train --config NAME``)."""
