"""The model registry: BentoML's model store for versions, plus an atomic production pointer.

BentoML's store keeps every model version immutably, with labels and metadata (lineage, metrics,
hyper-parameters). It has no notion of stages, so "which version is in production" is a small
JSON pointer next to the store, switched atomically (write temp, fsync, rename) and carrying its
own history, which is what makes rollback one step. The Bento service reads the same pointer, so
promoting or rolling back is what the running service follows.

The pointer record also holds what protects a release: the approval policy, the reviews and the withdrawals.
Every transition reads and writes it under one lock and checks the rules of ``release_rules`` there, so the
rules hold on every path (CLI, jobs, run config, the gate) whatever one process is configured to do.

No Dagster import here: the CLI and the Bento service use this module directly.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_assets.core.common.storage import atomic_write_json
from mlops_assets.core.model.onnx_model import ONNX_FILE
from mlops_assets.core.model.signature import signature_differences
from mlops_assets.core.registry import release_rules as rules
from mlops_assets.core.registry.model_versions import (
    ApprovalRequiredError,
    IncompatibleModelError,
    ModelVersion,
    ModelVersions,
    NothingToRollBackError,
    NotReleasableError,
    RegistryError,
    Stage,
)
from mlops_assets.core.registry.release_rules import APPROVED, AWAITING, REJECTED, ReleasePolicy
from mlops_assets.core.registry.shadow_slot import ShadowSlot

# The registry is where callers meet its errors and types: they are defined with the read side.
__all__ = ["ApprovalRequiredError", "IncompatibleModelError", "ModelRegistry", "ModelVersion", "NotReleasableError",
           "NothingToRollBackError", "RegistryError", "Stage"]


class ModelRegistry(ShadowSlot, ModelVersions):
    """Versions of one model name in a BentoML model store rooted at ``home``, and every transition between stages.

    ``require_approval`` is this process's setting (``MLOPS_REQUIRE_APPROVAL``, or the resource's run config):
    it seeds the stored policy of a registry that has none, and is otherwise only compared with the stored policy
    (:meth:`policy_conflict`); the stored policy is what every transition enforces (:attr:`require_approval`).
    """

    def __init__(self, home: str | Path, model_name: str, require_approval: bool | None = None) -> None:
        super().__init__(home, model_name)
        self.process_require_approval = require_approval

    def register(
        self, onnx_file: str | Path, version: str, labels: dict[str, str], metadata: dict[str, Any],
        actor: str = "unknown",
    ) -> ModelVersion:
        """Store an ONNX model under ``version``; registering the same version again is a no-op. The first write
        to a registry also stores its approval policy (seeded from this process's setting)."""
        import bentoml
        from bentoml.exceptions import NotFound

        store = self._store(create=True)
        try:
            bentoml.models.get(self.tag(version), _model_store=store)
        except NotFound:
            with bentoml.models.create(
                self.tag(version), labels=labels, metadata=metadata, _model_store=store
            ) as model:
                shutil.copyfile(onnx_file, model.path_of(ONNX_FILE))
        if "policy" not in self.read_pointer():
            self._mutate(actor, lambda pointer: None)
        return self.get(version)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes: every transition reads, checks and writes under this lock."""
        lock_path = self.pointer_path.with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _mutate(self, actor: str, change: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply ``change`` to the pointer record under the lock and write it in one atomic step. A record with no
        stored policy gets one first, seeded from this process's setting and recorded as such."""
        with self._locked():
            pointer = self.read_pointer()
            seeded = "policy" not in pointer
            if seeded:
                record, event = rules.seeded_policy(self.process_require_approval, actor, _now(),
                                                    pointer.get("current"))
                pointer = {**pointer, "policy": record, "events": [*pointer.get("events", []), event]}
            before = json.dumps(pointer, sort_keys=True)
            result = change(pointer)
            if seeded or json.dumps(pointer, sort_keys=True) != before:
                atomic_write_json(self.pointer_path, pointer)
            return result

    def production_version(self) -> str | None:
        """The version in production, from the pointer alone (cheap: no model store access)."""
        return self.read_pointer().get("current")

    def production(self) -> ModelVersion | None:
        current = self.production_version()
        return self.get(current) if current else None

    # -- the approval policy, stored with the registry ------------------------------------------------
    def policy(self) -> ReleasePolicy:
        return rules.stored_policy(self.read_pointer(), self.process_require_approval)

    @property
    def require_approval(self) -> bool:
        """Whether approval before release is required: the stored policy, never this process's setting."""
        return self.policy().require_approval

    def policy_conflict(self, where: str = "this process") -> str | None:
        """A warning to print when this process's setting disagrees with the stored policy (None: it agrees)."""
        return rules.policy_conflict(self.policy(), self.process_require_approval, where)

    def set_policy(self, require_approval: bool, by: str, reason: str) -> ReleasePolicy:
        """Change the stored policy: an explicit, recorded decision (who, when, why)."""
        _require_name_and_reason(by, reason, "change the approval policy of " + self.model_name)

        def change(pointer: dict[str, Any]) -> None:
            before = pointer["policy"]["require_approval"]
            at = _now()
            pointer["policy"] = {"require_approval": require_approval, "set_by": by, "set_at": at,
                                 "reason": reason, "seeded": False}
            pointer["events"] = [*pointer["events"], rules.policy_event(require_approval, before, by, at, reason,
                                                                        pointer.get("current"))]

        self._mutate(by, change)
        return self.policy()

    # -- transitions ----------------------------------------------------------------------------------
    def compatibility(self, version: str) -> list[str]:
        """How ``version`` differs from production's signature (empty: it may replace production)."""
        return self._differences(self.read_pointer(), version)

    def _differences(self, pointer: dict[str, Any], version: str) -> list[str]:
        current = pointer.get("current")
        if current is None or current == version:
            return []
        return signature_differences(self.get(current).metadata, self.get(version).metadata)

    def _require_compatible(self, pointer: dict[str, Any], version: str, allow_incompatible: bool,
                            action: str) -> list[str]:
        differences = self._differences(pointer, version)
        if differences and not allow_incompatible:
            raise IncompatibleModelError(
                f"refusing to {action} {self.tag(version)}: it is not compatible with production "
                f"{pointer.get('current')}: " + "; ".join(differences)
                + ". Replacing production with an incompatible model changes what every caller receives; "
                "do it explicitly (mlops-registry … --allow-incompatible, or allow_incompatible in the gate config)"
            )
        return differences

    def _refuse_unreleasable(self, pointer: dict[str, Any], version: str, action: str) -> None:
        if why := rules.why_not_releasable(pointer, version):
            raise NotReleasableError(f"refusing to {action} {self.tag(version)}: {why}")

    def _refuse_untested(self, pointer: dict[str, Any], version: str, action: str) -> None:
        if why := rules.why_not_tested(pointer, version):
            raise NotReleasableError(f"refusing to {action} {self.tag(version)}: {why}")

    def _refuse_unready(self, pointer: dict[str, Any], version: str, action: str,
                        approval_suffices: Callable[[dict[str, Any], str], bool], hint: str = "") -> bool:
        """The way into a serving slot: refuse a rejected, withdrawn or untested version and, when the stored policy
        requires approval, one ``approval_suffices`` does not accept. Returns whether approval is required."""
        self._refuse_unreleasable(pointer, version, action)
        self._refuse_untested(pointer, version, action)
        required = pointer["policy"]["require_approval"]
        if required and not approval_suffices(pointer, version):
            raise ApprovalRequiredError(
                f"refusing to {action} {self.tag(version)}: approval before release is required (the registry's "
                f"stored policy) and it is {rules.approval_state(pointer, version)}{hint}")
        return required

    # -- the release test: the Bento of a version, built and application-tested --------------------------
    def record_release_test(self, version: str, bento_tag: str, passed: bool, reason: str, by: str) -> None:
        """Record the outcome of ``version``'s release test (its Bento ``bento_tag`` served and checked against
        the offline model): who ran it, when, and why it passed or failed. The latest outcome is what counts: a
        failed test blocks every path to production until a test of the version passes again."""
        self.get(version)

        def change(pointer: dict[str, Any]) -> None:
            at = _now()
            pointer["release_tests"] = {**pointer.get("release_tests", {}), version: {
                "passed": passed, "bento_tag": bento_tag, "by": by, "at": at, "reason": reason}}
            pointer["events"] = [*pointer.get("events", []), {
                "at": at, "action": "release-test", "version": version, "from": pointer.get("current"),
                "to": pointer.get("current"), "passed": passed, "bento_tag": bento_tag,
                "reason": f"{'passed' if passed else 'FAILED'} ({bento_tag}): {reason}", "actor": by}]

        self._mutate(by, change)

    def release_test(self, version: str) -> dict[str, Any] | None:
        """The latest release test of ``version`` (passed, bento_tag, by, at, reason), or None."""
        return rules.release_test_of(self.read_pointer(), version)

    def promote(
        self, version: str, reason: str = "manual promotion", actor: str = "unknown",
        allow_incompatible: bool = False,
    ) -> ModelVersion:
        """candidate/previous-production → production; the production version before it is kept for rollback.

        Refuses a rejected or withdrawn version; a version whose signature differs from production's unless
        ``allow_incompatible``; and, when the stored policy requires approval, a version without an approval of
        a comparison with today's production (:meth:`approve` is how it reaches production)."""
        self.get(version)  # must exist

        def change(pointer: dict[str, Any]) -> None:
            if pointer.get("current") == version:
                return
            required = self._refuse_unready(pointer, version, "promote", rules.fresh_approval)
            differences = self._require_compatible(pointer, version, allow_incompatible, "promote")
            approval = (f"approved by {pointer['reviews'][version]['reviewed_by']}" if required
                        else "not required by the registry's policy")
            self._switch(pointer, version, "promote", reason, actor, differences, approval=approval)

        self._mutate(actor, change)
        return self.get(version)

    def admit(self, version: str, reason: str, actor: str, allow_incompatible: bool,
              tested: bool = False) -> tuple[bool, str]:
        """The gate's yes, under the stored policy, before or after the release test: (True, reason) when nothing
        but the release test stands between ``version`` and production; (False, why) for a rejected, withdrawn
        or (``tested``) untested version, or one whose approval is now requested from a reviewer."""
        pointer = self.read_pointer()
        why = rules.why_not_releasable(pointer, version) or (rules.why_not_tested(pointer, version) if tested
                                                             else None)
        if why:
            return False, f"the gate would promote it ({reason}), but {why}"
        required = rules.stored_policy(pointer, self.process_require_approval).require_approval
        if not required or rules.fresh_approval(pointer, version):
            return True, reason
        self.request_approval(version, reason=f"gate: {reason}", actor=actor, allow_incompatible=allow_incompatible)
        return False, (f"awaiting approval (the registry's policy requires it): {reason}. A reviewer approves it "
                       f"with review_model_job or `mlops-registry approve {version} --by NAME --reason ...`")

    def release(self, version: str, reason: str, actor: str, allow_incompatible: bool,
                to_shadow: bool = False) -> tuple[bool, str]:
        """The gate's yes after the release test: production now (its release test passed), or a request to a
        reviewer; never a rejected, withdrawn or untested version. Returns (promoted now, the reason to show).

        ``to_shadow`` (the release policy ``shadow``): to the shadow slot instead (:meth:`release_to_shadow`)."""
        admitted, why = self.admit(version, reason, actor, allow_incompatible, tested=True)
        if to_shadow and self.production_version() is not None:
            return False, self.release_to_shadow(version, reason, actor, allow_incompatible, admitted, why)
        if admitted:
            self.promote(version, reason=f"gate: {reason}", actor=actor, allow_incompatible=allow_incompatible)
        return admitted, why

    def _switch(self, pointer: dict[str, Any], version: str, action: str, reason: str, actor: str,
                differences: list[str], approval: str) -> None:
        """``version`` becomes production; the production version before it goes on the rollback stack."""
        history = [v for v in pointer.get("history", []) if v != version]
        if pointer.get("current"):
            history.append(pointer["current"])
        self._transition(pointer, version, history, action, reason, actor, differences, approval)

    # -- approval before release -------------------------------------------------------------------
    def request_approval(self, version: str, reason: str, actor: str = "unknown",
                         allow_incompatible: bool = False, resubmit: bool = False) -> ModelVersion:
        """candidate → awaiting-approval: a comparison with today's production waits for a person. The request
        names that production version, so an approval can never act on a comparison that has gone stale; a
        request made against another production version is replaced by this one (recorded). ``resubmit``: a
        fresh comparison of a rejected version, asking for the new explicit approval it needs."""
        self.get(version)

        def change(pointer: dict[str, Any]) -> None:
            current = pointer.get("current")
            if current == version:
                raise RegistryError(f"{self.tag(version)} is already the production model")
            earlier = rules.review_of(pointer, version)
            resubmitting_a_rejection = resubmit and earlier and earlier["state"] == REJECTED
            if not resubmitting_a_rejection or rules.withdrawal(pointer, version):
                self._refuse_unreleasable(pointer, version, "request approval for")
            if earlier and earlier["state"] in (AWAITING, APPROVED) and \
                    earlier.get("production_at_request") == current:
                return  # the same comparison again (a re-run): one request
            differences = self._require_compatible(pointer, version, allow_incompatible, "request approval for")
            review = {
                "state": AWAITING, "requested_at": _now(), "requested_by": actor, "request_reason": reason,
                "production_at_request": current,
                **({"incompatible_override": differences} if differences else {}),
                **({"earlier": [*earlier.pop("earlier", []), earlier]} if earlier else {}),
            }
            note = "" if not earlier else (
                f" (replaces the {earlier['state']} request made against production "
                f"{earlier.get('production_at_request')})")
            self._record_review(pointer, version, review, "request-approval", reason + note, actor)

        self._mutate(actor, change)
        return self.get(version)

    def approve(self, version: str, by: str, reason: str, allow_incompatible: bool = False,
                via: str = "") -> ModelVersion:
        """awaiting-approval → production, recording the reviewer, the comparison's production version, when and
        why (one atomic write). ``via``: the path it came by (e.g. a Dagster run), recorded beside the name."""
        _require_name_and_reason(by, reason, f"approve {self.tag(version)}")
        self.get(version)

        def change(pointer: dict[str, Any]) -> None:
            review = self._awaiting(pointer, version, "approve")
            current = pointer.get("current")
            if current != review.get("production_at_request"):
                raise RegistryError(
                    f"refusing to approve {self.tag(version)}: it was compared with production "
                    f"{review.get('production_at_request')}, but production is now {current}; compare it with "
                    f"today's production first (compare_model_job, version {version}, or build_job), then approve "
                    "the fresh request"
                )
            self._refuse_unreleasable(pointer, version, "approve")
            self._refuse_untested(pointer, version, "approve")
            allowed = allow_incompatible or bool(review.get("incompatible_override"))
            differences = self._require_compatible(pointer, version, allowed, "approve")
            pointer["reviews"] = {**pointer.get("reviews", {}), version: {
                **review, "state": APPROVED, "reviewed_at": _now(), "reviewed_by": by, "review_reason": reason,
                **({"reviewed_via": via} if via else {})}}
            self._switch(pointer, version, "approve", reason, _actor(by, via), differences,
                         approval=f"approved by {by} against production {current}")

        self._mutate(by, change)
        return self.get(version)

    def reject(self, version: str, by: str, reason: str, via: str = "") -> ModelVersion:
        """Any version → rejected, recording the reviewer, when and why. Rejecting the version in production
        withdraws it: production returns to the last earlier version that may serve (with approval required, an
        approved one). A rejected version serves again only after a fresh comparison and a new approval."""
        _require_name_and_reason(by, reason, f"reject {self.tag(version)}")
        self.get(version)

        def change(pointer: dict[str, Any]) -> str | None:
            earlier = rules.review_of(pointer, version)
            if earlier and earlier["state"] == REJECTED:
                raise RegistryError(f"{self.tag(version)} is already {rules.approval_state(pointer, version)}")
            at = _now()
            review = {**(earlier or {}), "state": REJECTED, "reviewed_at": at, "reviewed_by": by,
                      "review_reason": reason, **({"reviewed_via": via} if via else {})}
            pointer["reviews"] = {**pointer.get("reviews", {}), version: review}
            if pointer.get("current") != version:
                self._record_review(pointer, version, review, "reject", reason, _actor(by, via))
                self._settle_shadow(pointer, pointer["events"][-1], rejected=version)
                return None
            target = rules.rollback_target(pointer, pointer["policy"]["require_approval"], leaving=version)
            if target is None:
                raise RegistryError(
                    f"refusing to reject {self.tag(version)} while it serves: no earlier production version may "
                    "serve in its place (none, or all rejected, withdrawn or, with approval required, never "
                    "approved); promote or approve another version first, then reject this one"
                )
            self._withdraw(pointer, version, by, reason, "reject", at)
            history = [v for v in pointer.get("history", []) if v != target]
            self._transition(pointer, target, history, "reject", reason, _actor(by, via),
                             self._differences(pointer, target), approval="rejection of production: withdrawn")
            return target

        self._mutate(by, change)
        return self.get(version)

    def awaiting_approval(self) -> list[ModelVersion]:
        """Versions waiting for a reviewer, oldest request first (the pointer alone, then one read each)."""
        reviews = self.read_pointer().get("reviews", {})
        waiting = sorted((r["requested_at"], v) for v, r in reviews.items() if r["state"] == AWAITING)
        return [self.get(version) for _, version in waiting]

    def approval_state(self, version: str) -> str:
        return rules.approval_state(self.read_pointer(), version)

    def _awaiting(self, pointer: dict[str, Any], version: str, action: str) -> dict[str, Any]:
        review = rules.review_of(pointer, version)
        if not review or review["state"] != AWAITING:
            raise RegistryError(
                f"cannot {action} {self.tag(version)}: it is {rules.approval_state(pointer, version)}; only a "
                "version awaiting approval (a fresh comparison with today's production) can be approved"
            )
        return review

    def _record_review(self, pointer: dict[str, Any], version: str, review: dict[str, Any], action: str,
                       reason: str, actor: str) -> None:
        event = {"at": review.get("reviewed_at", review.get("requested_at", _now())), "action": action,
                 "version": version, "from": pointer.get("current"), "to": pointer.get("current"),
                 "reason": reason, "actor": actor}
        if review.get("incompatible_override") and action == "request-approval":
            event["incompatible_override"] = review["incompatible_override"]
        pointer["reviews"] = {**pointer.get("reviews", {}), version: review}
        pointer["events"] = [*pointer.get("events", []), event]

    # -- the way back --------------------------------------------------------------------------------
    def rollback(
        self, reason: str = "manual rollback", actor: str = "unknown", allow_incompatible: bool = False
    ) -> ModelVersion:
        """production → withdrawn, and the last earlier production version that may serve → production.

        Needs no reviewer (the way back from a bad release must not wait), but returns only to a version that
        may serve: never a rejected or withdrawn one; with approval required, an approved one or one released
        while approval was not required. The withdrawn version comes back only by :meth:`reinstate`."""

        def change(pointer: dict[str, Any]) -> str:
            current = pointer.get("current")
            target = rules.rollback_target(pointer, pointer["policy"]["require_approval"], leaving=current)
            if target is None:
                skipped = [v for v in pointer.get("history", []) if v != current]
                raise NothingToRollBackError(
                    f"{self.model_name} has no previous production version to roll back to"
                    + (f" (skipped, as they may not serve: {', '.join(skipped)})" if skipped else "")
                )
            differences = self._require_compatible(pointer, target, allow_incompatible, "roll back to")
            if current:
                self._withdraw(pointer, current, actor, reason, "rollback", _now())
            history = [v for v in pointer.get("history", []) if v != target]
            self._transition(pointer, target, history, "rollback", reason, actor, differences,
                             approval="rollback to a version released before")
            return target

        return self.get(self._mutate(actor, change))

    def reinstate(self, version: str, by: str, reason: str, allow_incompatible: bool = False) -> ModelVersion:
        """withdrawn → production (approval not required by the stored policy) or → candidate (required: it then
        needs a fresh comparison and an approval like any candidate). Recorded with who and why."""
        _require_name_and_reason(by, reason, f"reinstate {self.tag(version)}")
        self.get(version)

        def change(pointer: dict[str, Any]) -> None:
            withdrawn = rules.withdrawal(pointer, version)
            if not withdrawn:
                raise RegistryError(f"cannot reinstate {self.tag(version)}: it was never withdrawn")
            review = rules.review_of(pointer, version)
            if review and review["state"] == REJECTED:
                raise NotReleasableError(f"refusing to reinstate {self.tag(version)}: "
                                         + rules.why_not_releasable({**pointer, "withdrawn": {}}, version))
            remaining = {v: w for v, w in pointer["withdrawn"].items() if v != version}
            if pointer["policy"]["require_approval"]:
                pointer["withdrawn"] = remaining
                if review:  # an approval given before the withdrawal does not outlive it
                    pointer["reviews"] = {v: r for v, r in pointer["reviews"].items() if v != version}
                    pointer.setdefault("withdrawn_reviews", {}).setdefault(version, []).append(review)
                event = {"at": _now(), "action": "reinstate", "version": version, "from": pointer.get("current"),
                         "to": pointer.get("current"), "reason": reason + " (approval required: it is a candidate "
                         "again and needs a fresh comparison and an approval)", "actor": by}
                pointer["events"] = [*pointer.get("events", []), event]
                return
            differences = self._require_compatible(pointer, version, allow_incompatible, "reinstate")
            self._refuse_untested(pointer, version, "reinstate")
            pointer["withdrawn"] = remaining
            self._switch(pointer, version, "reinstate", reason, by, differences,
                         approval="not required by the registry's policy")

        self._mutate(by, change)
        return self.get(version)

    def _withdraw(self, pointer: dict[str, Any], version: str, by: str, reason: str, action: str, at: str) -> None:
        pointer["withdrawn"] = {**pointer.get("withdrawn", {}),
                                version: {"at": at, "by": by, "reason": reason, "action": action}}

    def _transition(
        self, pointer: dict[str, Any], current: str, history: list[str], action: str, reason: str, actor: str,
        differences: list[str], approval: str,
    ) -> None:
        """Switch the pointer and record the transition (what, from, to, who, when, why, under which policy)."""
        event = {"at": _now(), "action": action, "from": pointer.get("current"), "to": current, "reason": reason,
                 "actor": actor, "approval_required": pointer["policy"]["require_approval"], "approval": approval}
        if differences:
            event["incompatible_override"] = differences
        pointer.update(current=current, history=history, events=[*pointer.get("events", []), event])
        self._settle_shadow(pointer, event)

    def events(self) -> list[dict[str, Any]]:
        """Every transition, review and policy change, oldest first."""
        return list(self.read_pointer().get("events", []))


def _require_name_and_reason(by: str, reason: str, action: str) -> None:
    if not by.strip() or not reason.strip():
        raise RegistryError(f"to {action}, say who you are (--by) and why (--reason)")


def _actor(by: str, via: str) -> str:
    return f"{by} ({via})" if via else by


def _now() -> str:
    return datetime.now(UTC).isoformat()
