"""User data streams through the exchange's WebSocket API (``WSManager.user_data``).

- :mod:`~wsmanager.userdata.keys`: API credentials and signatures (HMAC, Ed25519, RSA);
- :mod:`~wsmanager.userdata.protocol`: the WebSocket API's requests, answers and events (pure);
- :mod:`~wsmanager.userdata.connection`: one WebSocket API connection and its reader thread;
- :mod:`~wsmanager.userdata.session`: the accounts of one URL, re-subscribed wherever lost;
- :mod:`~wsmanager.userdata.service`: a manager's sessions and their callback thread.

See ``docs/user-data.md``.
"""

from __future__ import annotations

from .keys import Credentials, load_private_key
from .service import UserDataFigures, UserDataStreams

__all__ = ["Credentials", "UserDataFigures", "UserDataStreams", "load_private_key"]
