"""Answers from the measured study: hypothesis tests and effect sizes (``stats``), Pareto fronts
and break-even of optimization energy (``frontier``). Plain library: no Kedro."""
