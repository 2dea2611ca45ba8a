"""Rasa Open Source as the second NLU backend.

- :mod:`nlu.rasa.client`: :class:`RasaNluParser`, the HTTP client of ``/model/parse``;
- :mod:`nlu.rasa.breaker`: :class:`FallbackNluParser`, the embedded parser
  answering while Rasa is down;
- :mod:`nlu.rasa.server`: the Rasa virtualenv, training and serving (``make rasa``);
- ``config.yml``: the pipeline; the training data is ``nlu/data`` itself.

Rasa itself is never imported here: it runs in its own process and Python.
"""

from nlu.rasa.breaker import FallbackNluParser
from nlu.rasa.client import EntityNormaliser, RasaNluParser

__all__ = ["EntityNormaliser", "FallbackNluParser", "RasaNluParser"]
