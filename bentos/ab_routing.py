"""A/B on live traffic: a fraction of the clients is answered by the challenger (the registry's shadow slot).

``MLOPS_AB_FRACTION`` (0, the default: off) is the share of clients the challenger answers. A client is named by
its ``X-Client-Key`` header; a stable hash of the key puts it in a bucket in [0, 1) (:func:`bucket_of`), and the
challenger answers it when the bucket is below the fraction (:func:`answered_by_challenger`), so one client sees
one version for as long as the fraction and the challenger stay. A request without a key is answered by
production: a client that cannot be recognised again would otherwise see the two versions in turn.

Only a version the registry lets answer clients does (``release_rules.why_not_answerable``: in the shadow slot, its
release test passed, not rejected or withdrawn, approved when the stored policy requires it). The service asks the
registry on every change of the pointer (:meth:`ChallengerGate.judge`, called by the shadow slot's watcher) and
answers with the challenger only while the loaded shadow is the version last judged answerable
(:meth:`ChallengerGate.answering`): a shadow that may only shadow still shadows, answers no client, and ``/model``
says why. A client in the challenger's share is answered by production while there is no answerable challenger.

Routing ``/classify`` needs a decision before BentoML's adaptive batching merges requests of many clients into one
model call, so :class:`AbRouting` (an ASGI middleware inside the request guard) sends a challenger-share request of
``/classify`` to the batched endpoint ``/classify_challenger`` (the same schema and batching, its own batches),
which is not reachable from outside (a 404). The unbatched endpoints read the header themselves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from http import HTTPStatus
from typing import Any

from bentos.request_guard import error_body, send_json
from bentos.served_model import LoadedModel

logger = logging.getLogger("bentoml.mlops.classifier")
CLIENT_KEY_HEADER = "X-Client-Key"
ROUTED_PATH = "/classify"
CHALLENGER_PATH = "/classify_challenger"  # where the challenger's share of /classify is batched; internal only


def bucket_of(client_key: str) -> float:
    """The client's bucket in [0, 1): the first 8 bytes of the key's SHA-256, the same in every process."""
    digest = hashlib.sha256(client_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def answered_by_challenger(client_key: str | None, fraction: float) -> bool:
    """Whether the client with ``client_key`` is in the challenger's share (no key: production's)."""
    return bool(client_key) and fraction > 0 and bucket_of(client_key) < fraction


def client_key_of(headers: Any) -> str | None:
    """The request's client key from a mapping of headers (starlette's, case-insensitive), or None."""
    value = headers.get(CLIENT_KEY_HEADER) if headers is not None else None
    return value.strip() or None if isinstance(value, str) else None


class ChallengerGate:
    """Which shadow version may answer clients, as the registry last judged it (see the module docstring)."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.answerable: str | None = None  # the shadow version the registry lets answer clients
        self.refusal: str | None = None  # why the shadow in the slot may not (None: it may, or there is none)
        self.answered = 0  # images routed to the challenger in this worker
        self._lock = threading.Lock()

    def judge(self, registry, version: str | None) -> None:
        """Ask the registry whether the shadow ``version`` (None: the slot is empty) may answer clients; called by
        the shadow slot's watcher on every change of the pointer. A registry that cannot answer means no."""
        if version is None:
            self.answerable, self.refusal = None, None
            return
        try:
            why = registry.why_not_answerable(version)
        except Exception as exc:  # noqa: BLE001 - an unreadable rule answers no client
            why = f"the registry could not say whether {version} may answer clients: {type(exc).__name__}: {exc}"
        if why != self.refusal or (why is None) != (self.answerable == version):
            logger.info("challenger %s: %s", version, why or f"answers {self.fraction:.0%} of the keyed clients")
        self.answerable, self.refusal = (None, why) if why else (version, None)

    def answering(self, shadow: LoadedModel | None) -> LoadedModel | None:
        """The loaded shadow if the registry lets it answer clients now, else None (production answers)."""
        if self.fraction <= 0 or shadow is None or shadow.version != self.answerable:
            return None
        return shadow

    def choose(self, production: LoadedModel, shadow: LoadedModel | None, client_key: str | None, images: int = 1,
               share: bool | None = None) -> tuple[LoadedModel, LoadedModel | None]:
        """The model that answers a client and the one the shadow's thread scores beside it (None: the shadow):
        the challenger (then production beside it) for a client in its share (``share``, else from the key) while
        the registry lets it answer; production otherwise. ``images``: counted as the challenger's."""
        in_share = answered_by_challenger(client_key, self.fraction) if share is None else share
        challenger = self.answering(shadow) if in_share else None
        if challenger is None:
            return production, None
        with self._lock:
            self.answered += images
        return challenger, production

    def describe(self, shadow: LoadedModel | None) -> dict[str, Any]:
        """``/model``'s ``ab``: the fraction, who answers the challenger's share now, and why not the shadow."""
        answering = self.answering(shadow)
        why = None
        if self.fraction <= 0:
            why = "A/B is off (MLOPS_AB_FRACTION=0)"
        elif shadow is None:
            why = "no shadow is loaded"
        elif answering is None:
            why = self.refusal or f"{shadow.version} has not been judged by the registry yet"
        return {"fraction": self.fraction, "client_key_header": CLIENT_KEY_HEADER,
                "challenger_version": answering.version if answering else None, "not_answering": why,
                "answered": self.answered}


class AbRouting:
    """ASGI middleware: a keyed client in the challenger's share of ``/classify`` goes to its batched endpoint;
    ``/classify_challenger`` itself is a 404 from outside. Installed inside the request guard (token, size and
    media type are checked on the path the client used)."""

    def __init__(self, app: Any, fraction: float) -> None:
        self.app = app
        self.fraction = fraction

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope.get("path")
            if path == CHALLENGER_PATH:
                await send_json(send, HTTPStatus.NOT_FOUND, error_body(
                    f"{CHALLENGER_PATH} is internal: POST {ROUTED_PATH} with an {CLIENT_KEY_HEADER} header"))
                return
            if path == ROUTED_PATH and self.fraction > 0 and answered_by_challenger(self.key(scope), self.fraction):
                scope = {**scope, "path": CHALLENGER_PATH, "raw_path": CHALLENGER_PATH.encode()}
        await self.app(scope, receive, send)

    @staticmethod
    def key(scope: dict) -> str | None:
        from starlette.datastructures import Headers

        return client_key_of(Headers(scope=scope))
