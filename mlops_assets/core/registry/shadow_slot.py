"""The shadow slot's transitions: a challenger scores the live requests production answers and answers no client.

candidate ──set_shadow──► shadow ──promote / approve──► production; ``clear_shadow`` or a rejection empties it, and
so does a production change that leaves it incompatible. ``approve_trial`` lets the shadow answer its A/B share of
clients under a policy that requires approval (a recorded decision, void once production changes; never a release).
The way in obeys the rules of ``release_rules`` (see "A shadow enters like a promotion"). A mixin of
:class:`mlops_assets.core.registry.registry.ModelRegistry`: it writes the pointer record only through the registry's
``_mutate`` (one lock, one atomic write) and checks with its refusals.
No Dagster import.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlops_assets.core.model.signature import signature_differences
from mlops_assets.core.registry import release_rules as rules
from mlops_assets.core.registry.model_versions import (
    SHADOW_SLOT,
    SLOTS_KEY,
    ModelVersion,
    RegistryError,
)


class ShadowSlot:
    """Set, clear and settle the shadow slot of a :class:`ModelRegistry` (whose lock and checks it uses)."""

    def set_shadow(self, version: str, reason: str, actor: str = "unknown",
                   allow_incompatible: bool = False) -> ModelVersion:
        """candidate → shadow: ``version`` scores the requests production answers, off the request path, and
        answers no client. It enters as a promotion would (see ``release_rules``: not rejected or withdrawn, its
        release test passed, production's signature unless ``allow_incompatible``; with approval required, under
        a reviewer's eyes); a shadow already there is replaced (recorded). Promotion or approval takes it to
        production, which empties the slot."""
        if not reason.strip():
            raise RegistryError(f"to put {self.tag(version)} in shadow, say why (--reason)")
        self.get(version)

        def change(pointer: dict[str, Any]) -> None:
            current = pointer.get("current")
            if current is None:
                raise RegistryError(f"refusing to shadow {self.tag(version)}: there is no production model to "
                                    "shadow; promote a first version")
            if current == version:
                raise RegistryError(f"{self.tag(version)} is already the production model")
            before = (pointer.get(SLOTS_KEY) or {}).get(SHADOW_SLOT)
            if before == version:
                return
            required = self._refuse_unready(
                pointer, version, "shadow", rules.under_fresh_review,
                hint="; request approval for it first (the gate does, in build_job), so the shadow's live evidence "
                     "reaches the reviewer")
            differences = self._require_compatible(pointer, version, allow_incompatible, "shadow")
            pointer[SLOTS_KEY] = {**(pointer.get(SLOTS_KEY) or {}), SHADOW_SLOT: version}
            pointer.pop(rules.TRIAL_KEY, None)  # a trial approval is for one shadow's stay in the slot
            event = {"at": now(), "action": "shadow", "version": version, "from": current, "to": current,
                     "was": before, "reason": reason, "actor": actor, "approval_required": required,
                     "approval": (rules.approval_state(pointer, version) if required
                                  else "not required by the registry's policy")}
            if differences:
                event["incompatible_override"] = differences
            pointer["events"] = [*pointer.get("events", []), event]

        self._mutate(actor, change)
        return self.get(version)

    def release_to_shadow(self, version: str, reason: str, actor: str, allow_incompatible: bool, admitted: bool,
                          why: str) -> str:
        """The gate's yes under the release policy ``shadow``, production being there: a version the gate would
        promote, or whose approval it has just requested, goes to the shadow slot beside production (a reviewer
        then decides with live evidence); any other stays out. Returns the reason to show."""
        current = self.production_version()
        if not admitted and not rules.under_fresh_review(self.read_pointer(), version):
            return why
        self.set_shadow(version, f"gate, release policy shadow: {reason}", actor, allow_incompatible)
        return f"in shadow beside production {current} (release policy: shadow first): {why}"

    def clear_shadow(self, reason: str, actor: str = "unknown") -> str | None:
        """shadow → candidate: the slot is emptied (recorded). Returns the version that left it (None: the slot
        was empty, and nothing is recorded)."""
        if not reason.strip():
            raise RegistryError("to clear the shadow slot, say why (--reason)")

        def change(pointer: dict[str, Any]) -> str | None:
            version = (pointer.get(SLOTS_KEY) or {}).get(SHADOW_SLOT)
            if version is None:
                return None
            drop_shadow(pointer)
            pointer["events"] = [*pointer.get("events", []), {
                "at": now(), "action": "clear-shadow", "version": version, "from": pointer.get("current"),
                "to": pointer.get("current"), "reason": reason, "actor": actor}]
            return version

        return self._mutate(actor, change)

    def why_not_answerable(self, version: str) -> str | None:
        """Why the shadow ``version`` may not answer clients (an A/B arm of the serving process), None when it may
        (``release_rules.why_not_answerable``: the registry owns the rule; the service only asks)."""
        return rules.why_not_answerable(self.read_pointer(), version)

    def why_not_promotable(self, version: str) -> str | None:
        """Why a promotion would refuse ``version`` now (``release_rules.why_not_promotable``), None when it would
        not: a trial approval never counts."""
        return rules.why_not_promotable(self.read_pointer(), version)

    def trial_approval(self) -> dict[str, Any] | None:
        """The shadow's trial approval (version, by, at, reason, production, via), fresh or void; None: none."""
        pointer = self.read_pointer()
        shadow = (pointer.get(SLOTS_KEY) or {}).get(SHADOW_SLOT)
        return rules.trial_approval_of(pointer, shadow) if shadow else None

    def approve_trial(self, version: str, by: str, reason: str, via: str = "") -> dict[str, Any]:
        """Let the shadow ``version`` answer its A/B share of clients although the stored policy requires approval:
        a reviewer's recorded decision (who, when, why, ``via``, and the production version it was compared with).
        Only the version in the shadow slot, not rejected, withdrawn or untested; it holds while that production
        serves and the version shadows, and it is never the approval a promotion needs. Returns the record."""
        from mlops_assets.core.registry.registry import _actor, _require_name_and_reason  # it imports this mixin

        _require_name_and_reason(by, reason, f"approve a trial of {self.tag(version)}")
        self.get(version)

        def change(pointer: dict[str, Any]) -> dict[str, Any]:
            shadow, current = (pointer.get(SLOTS_KEY) or {}).get(SHADOW_SLOT), pointer.get("current")
            if shadow != version:
                raise RegistryError(
                    f"refusing to approve a trial of {self.tag(version)}: only the version in the shadow slot may "
                    f"answer clients on trial, and the shadow is {shadow or 'empty'}; put it in shadow first "
                    f"(`mlops-registry shadow {version} --reason ...`)")
            self._refuse_unreleasable(pointer, version, "approve a trial of")
            self._refuse_untested(pointer, version, "approve a trial of")
            at, actor = now(), _actor(by, via)
            record = {"version": version, "production": current, "by": by, "at": at, "reason": reason,
                      **({"via": via} if via else {})}
            pointer[rules.TRIAL_KEY] = record
            pointer["events"] = [*pointer.get("events", []), {
                "at": at, "action": "approve-trial", "version": version, "from": current, "to": current,
                "compared_with": current, "reason": reason, "actor": actor,
                "approval_required": pointer["policy"]["require_approval"],
                "approval": f"trial: answers its A/B share against production {current}; promotion still needs "
                            "an approval"}]
            return record

        return self._mutate(by, change)

    def _settle_shadow(self, pointer: dict[str, Any], event: dict[str, Any], rejected: str | None = None) -> None:
        """After production moved (or ``rejected`` was rejected): a shadow that is production now, was rejected, or
        no longer matches production's signature leaves the slot; ``event`` says so."""
        shadow, current = (pointer.get(SLOTS_KEY) or {}).get(SHADOW_SLOT), pointer.get("current")
        if shadow is None:
            return
        if shadow == rejected:
            why = f"{shadow} left the shadow slot: rejected"
        elif shadow == current:
            why = f"{shadow} left the shadow slot: it is production now"
        else:
            differences = signature_differences(self.get(current).metadata, self.get(shadow).metadata)
            if not differences:
                return
            why = (f"{shadow} left the shadow slot: it is not compatible with production {current}: "
                   + "; ".join(differences))
        drop_shadow(pointer)
        event["shadow_cleared"] = why


def drop_shadow(pointer: dict[str, Any]) -> None:
    """Empty the shadow slot of ``pointer`` (a pointer with no other slot keeps no ``slots`` key)."""
    slots = {slot: v for slot, v in (pointer.get(SLOTS_KEY) or {}).items() if slot != SHADOW_SLOT}
    pointer.pop(rules.TRIAL_KEY, None)  # the trial ends with the shadow's stay (the events keep it)
    if slots:
        pointer[SLOTS_KEY] = slots
    else:
        pointer.pop(SLOTS_KEY, None)


def now() -> str:
    return datetime.now(UTC).isoformat()
