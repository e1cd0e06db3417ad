"""Answers from the measured study: hypothesis tests and effect sizes (``stats``), Pareto fronts
and break-even of optimization energy (``frontier``), and the study's research questions RQ1.1 to
RQ1.7 answered from the evaluate pipeline's results table (``questions``). Plain library: no Kedro."""
