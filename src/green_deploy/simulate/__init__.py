"""Simulated energy and carbon of federated vs centralized (and continual) learning: the model
(``model``), what the comparison hinges on (``sensitivity``) and its Markdown summary (``report``).
Plain Python and pandas; nothing here knows of Kedro."""
